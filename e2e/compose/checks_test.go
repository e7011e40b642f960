package compose

import (
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/e2e/envtags"
	"github.com/portico-mesh/portico/edge/apidocs"
)

// deliverable is what the checks look at: the loaded compose project, the
// parsed Dockerfile and the files they refer to, so that a test can break
// any of them in memory.
type deliverable struct {
	root    string // absolute repository root
	project *project
	df      dockerfile
	// Prometheus configurations: the compose stack's and make up's.
	promCompose, promMakeUp []byte
	// mesh/images/images.txt: the local stand-ins of upstream images.
	localImages []byte
	// nomad/agent.dev.hcl, whose Docker driver names an upstream image
	// (infra_image) that images.txt must list too.
	nomadAgent []byte
}

// check is one invariant; it returns what it found wrong.
type check func(d *deliverable) []string

// publishedPorts are the only host ports the stack may publish, all on
// the host's loopback.
var publishedPorts = []string{"15672", "16686", "3000", "5000", "8500", "9090"} // sorted as strings

// appTargets are the Dockerfile targets of Portico's mesh services: each
// runs in a pod with its agent and sidecar.
var appTargets = []string{"users", "products", "edge"}

const consulImage = "hashicorp/consul:"

func (d *deliverable) service(name string) (*service, bool) {
	s, ok := d.project.Services[name]
	return s, ok
}

func (d *deliverable) serviceNames() []string {
	names := make([]string, 0, len(d.project.Services))
	for name := range d.project.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Restart policies and dependency conditions of the Compose specification.
const (
	restartNo            = "no"
	restartUnlessStopped = "unless-stopped"
	restartAlways        = "always"
	conditionHealthy     = "service_healthy"
	conditionCompleted   = "service_completed_successfully"
)

func longRunning(s *service) bool { return s.Restart != restartNo }

func envValue(s *service, name string) string { return s.Environment[name] }

// flagValue returns the word after flag in a command.
func flagValue(cmd []string, flag string) string {
	if i := slices.Index(cmd, flag); i >= 0 && i+1 < len(cmd) {
		return cmd[i+1]
	}
	return ""
}

func checkImagesPinned(d *deliverable) []string {
	var problems []string
	for _, name := range d.serviceNames() {
		s, _ := d.service(name)
		switch {
		case s.Image == "":
			problems = append(problems, name+": no image")
		case s.Build != nil:
			// Built here: the tag is Portico's version, never latest.
			if _, tag, ok := strings.Cut(s.Image, ":"); !ok || tag == "" || tag == "latest" || !strings.HasPrefix(s.Image, "portico/") {
				problems = append(problems, fmt.Sprintf("%s: built image %q: want portico/<name>:<version>", name, s.Image))
			}
		case !pinnedImage(s.Image):
			problems = append(problems, fmt.Sprintf("%s: image %q is not pinned to a version", name, s.Image))
		}
	}
	return problems
}

func checkHealthAndRestart(d *deliverable) []string {
	var problems []string
	completedBy := map[string]bool{}
	for _, s := range d.project.Services {
		for dep, c := range s.DependsOn {
			if c == conditionCompleted {
				completedBy[dep] = true
			}
		}
	}
	for _, name := range d.serviceNames() {
		s, _ := d.service(name)
		switch s.Restart {
		case restartUnlessStopped, restartAlways:
			h := s.HealthCheck
			if h == nil || h.Disable || len(h.Test) == 0 || h.Test[0] == "NONE" {
				problems = append(problems, name+": long-running without a healthcheck")
			}
		case restartNo:
			if !completedBy[name] {
				problems = append(problems, name+": a one-shot nothing waits for (service_completed_successfully)")
			}
		default:
			problems = append(problems, fmt.Sprintf("%s: restart %q: want unless-stopped (or always), or \"no\" for a one-shot", name, s.Restart))
		}
	}
	return problems
}

func checkDependsOn(d *deliverable) []string {
	var problems []string
	for _, name := range d.serviceNames() {
		s, _ := d.service(name)
		for dep, c := range s.DependsOn {
			target, ok := d.service(dep)
			if !ok {
				problems = append(problems, fmt.Sprintf("%s depends on %s, which is no service", name, dep))
				continue
			}
			switch c {
			case conditionHealthy:
				if target.HealthCheck == nil || target.HealthCheck.Disable {
					problems = append(problems, fmt.Sprintf("%s waits for %s to be healthy, which has no healthcheck", name, dep))
				}
			case conditionCompleted:
				if longRunning(target) {
					problems = append(problems, fmt.Sprintf("%s waits for %s to complete, which is long-running", name, dep))
				}
			default:
				problems = append(problems, fmt.Sprintf("%s depends on %s with condition %q: want service_healthy or service_completed_successfully", name, dep, c))
			}
		}
	}
	return problems
}

func checkPublishedPorts(d *deliverable) []string {
	var problems []string
	var published []string
	for _, name := range d.serviceNames() {
		s, _ := d.service(name)
		for _, p := range s.Ports {
			published = append(published, p.Published)
			if p.HostIP != "127.0.0.1" {
				problems = append(problems, fmt.Sprintf("%s publishes %s on %q: want 127.0.0.1", name, p.Published, p.HostIP))
			}
		}
	}
	sort.Strings(published)
	if !slices.Equal(published, publishedPorts) {
		problems = append(problems, fmt.Sprintf("published ports %v, want exactly %v", published, publishedPorts))
	}
	return problems
}

// checkPods requires every Portico mesh service to run in a pod: its Consul
// agent owns the network namespace (<id>-agent), the service (<id>) and its
// sidecar (<id>-sidecar) join it; the service listens on loopback and
// registers as <id> with that agent; the sidecar serves that instance.
func checkPods(d *deliverable) []string {
	var problems []string
	for _, name := range d.serviceNames() {
		s, _ := d.service(name)
		if s.Build == nil || !slices.Contains(appTargets, s.Build.Target) {
			continue
		}
		agentName, sidecarName := name+"-agent", name+"-sidecar"
		agent, ok := d.service(agentName)
		if !ok || !strings.HasPrefix(agent.Image, consulImage) {
			problems = append(problems, fmt.Sprintf("%s: no Consul agent %s", name, agentName))
			continue
		}
		if agent.NetworkMode != "" {
			problems = append(problems, fmt.Sprintf("%s: network_mode %q: the agent owns the pod's namespace", agentName, agent.NetworkMode))
		}
		if !slices.Contains(agent.Command, "-client=127.0.0.1") {
			problems = append(problems, agentName+": its HTTP API must be on the pod's loopback (-client=127.0.0.1)")
		}
		sidecar, ok := d.service(sidecarName)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: no sidecar %s", name, sidecarName))
			continue
		}
		for _, member := range []*service{s, sidecar} {
			if member.NetworkMode != "service:"+agentName {
				problems = append(problems, fmt.Sprintf("%s: network_mode %q, want service:%s", member.Name, member.NetworkMode, agentName))
			}
		}
		if id := envValue(s, "SERVICE_ID"); id != name {
			problems = append(problems, fmt.Sprintf("%s: SERVICE_ID %q, want %s", name, id, name))
		}
		if addr := envValue(s, "CONSUL_HTTP_ADDR"); addr != "127.0.0.1:8500" {
			problems = append(problems, fmt.Sprintf("%s: CONSUL_HTTP_ADDR %q, want its pod's agent, 127.0.0.1:8500", name, addr))
		}
		host, port, err := net.SplitHostPort(envValue(s, "HTTP_ADDR"))
		if err != nil || host != "127.0.0.1" {
			problems = append(problems, fmt.Sprintf("%s: HTTP_ADDR %q: want 127.0.0.1:<port>", name, envValue(s, "HTTP_ADDR")))
		}
		if got := flagValue(sidecar.Command, "-for"); got != name {
			problems = append(problems, fmt.Sprintf("%s: sidecar for %q, want %s", sidecarName, got, name))
		}
		if got := flagValue(sidecar.Command, "-app-port"); got != port {
			problems = append(problems, fmt.Sprintf("%s: -app-port %q, want the port of %s's HTTP_ADDR, %s", sidecarName, got, name, port))
		}
	}
	// Every namespace shared is a pod's, except Grafana's: it joins
	// Prometheus, because its provisioned datasource is 127.0.0.1:9090.
	for _, name := range d.serviceNames() {
		s, _ := d.service(name)
		owner, ok := strings.CutPrefix(s.NetworkMode, "service:")
		if !ok {
			continue
		}
		if !strings.HasSuffix(owner, "-agent") && (name != "grafana" || owner != "prometheus") {
			problems = append(problems, fmt.Sprintf("%s: shares the namespace of %s, which is no pod's agent", name, owner))
		}
	}
	if g, ok := d.service("grafana"); !ok || g.NetworkMode != "service:prometheus" {
		problems = append(problems, "grafana: must share Prometheus's network namespace (its datasource is http://127.0.0.1:9090)")
	}
	return problems
}

// binaryPackages maps each Dockerfile build target named like a binary to
// its package, from the build stage's `name=./path` list.
func binaryPackages(df dockerfile) map[string]string {
	out := map[string]string{}
	build := df.stageNamed("build")
	if build == nil {
		return out
	}
	re := regexp.MustCompile(`\b([a-z]+)=(\./[\w./-]+)`)
	for _, in := range build.instrs {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		for _, m := range re.FindAllStringSubmatch(in.args, -1) {
			out[m[1]] = m[2]
		}
	}
	return out
}

// rateLimitEnv are the variables make up gives envoyproxy/ratelimit.
func rateLimitEnv(root string) (map[string]bool, error) {
	b, err := os.ReadFile(filepath.Join(root, "mesh", "localenv", "ratelimit.go"))
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`"([A-Z][A-Z0-9_]*)=`).FindAllStringSubmatch(string(b), -1) {
		names[m[1]] = true
	}
	return names, nil
}

func checkEnvironment(d *deliverable) []string {
	var problems []string
	packages := binaryPackages(d.df)
	for _, name := range d.serviceNames() {
		s, _ := d.service(name)
		if s.Build == nil {
			continue
		}
		var allowed envtags.Names
		var reader string
		var err error
		if pkg, ok := packages[s.Build.Target]; ok {
			reader = pkg
			allowed, err = envtags.Program(d.root, pkg)
		} else if s.Build.Target == "ratelimit" {
			reader = "mesh/localenv/ratelimit.go"
			allowed, err = rateLimitEnv(d.root)
		} else {
			if len(s.Environment) > 0 {
				problems = append(problems, fmt.Sprintf("%s: environment for target %q, which reads none", name, s.Build.Target))
			}
			continue
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		sdk := s.Build.Target != "ratelimit" // a Portico binary: the OpenTelemetry SDK reads OTEL_*
		for env := range s.Environment {
			if !allowed[env] && (!sdk || !otelSDKEnv[env]) {
				problems = append(problems, fmt.Sprintf("%s sets %s, which %s does not read", name, env, reader))
			}
		}
	}
	return problems
}

// otelSDKEnv are the standard OpenTelemetry variables the SDK reads for
// every Portico binary (services/platform/telemetry: autoexport and the
// resource): no struct tag names them, so envtags cannot.
var otelSDKEnv = map[string]bool{
	"OTEL_SDK_DISABLED": true, "OTEL_SERVICE_NAME": true, "OTEL_RESOURCE_ATTRIBUTES": true,
	"OTEL_TRACES_EXPORTER": true, "OTEL_TRACES_SAMPLER": true, "OTEL_TRACES_SAMPLER_ARG": true,
	"OTEL_EXPORTER_OTLP_ENDPOINT": true, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": true,
	"OTEL_EXPORTER_OTLP_PROTOCOL": true, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": true,
	"OTEL_EXPORTER_OTLP_HEADERS": true, "OTEL_EXPORTER_OTLP_TIMEOUT": true,
	"OTEL_BSP_SCHEDULE_DELAY": true, "OTEL_BSP_MAX_QUEUE_SIZE": true, "OTEL_BSP_EXPORT_TIMEOUT": true,
}

// dockerignored says whether the .dockerignore patterns (plain paths and
// **/ globs, the kinds the file uses) keep path out of the build context.
func dockerignored(root, path string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		return false, err
	}
	clean := filepath.ToSlash(filepath.Clean(path))
	for _, line := range strings.Split(string(b), "\n") {
		pattern := strings.TrimSpace(line)
		if pattern == "" || strings.HasPrefix(pattern, "#") {
			continue
		}
		if strings.HasPrefix(pattern, "!") {
			return false, fmt.Errorf(".dockerignore: exceptions (%s) are not understood by this check", pattern)
		}
		if clean == pattern || strings.HasPrefix(clean, pattern+"/") {
			return true, nil
		}
		if base, ok := strings.CutPrefix(pattern, "**/"); ok {
			for _, part := range strings.Split(clean, "/") {
				if ok, _ := filepath.Match(base, part); ok {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

func checkFilesExist(d *deliverable) []string {
	var problems []string
	for _, name := range d.serviceNames() {
		s, _ := d.service(name)
		for _, v := range s.Volumes {
			if !v.Bind {
				if !d.project.Volumes[v.Source] {
					problems = append(problems, fmt.Sprintf("%s: volume %s is not a named volume of the project", name, v.Source))
				}
				continue
			}
			rel, err := filepath.Rel(d.root, v.Source)
			if err != nil || strings.HasPrefix(rel, "..") {
				problems = append(problems, fmt.Sprintf("%s: mounts %s, outside the repository", name, v.Source))
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				problems = append(problems, fmt.Sprintf("%s: mounts %s, which does not exist", name, rel))
			}
		}
	}
	for _, c := range d.df.copies() {
		if c.from != "" {
			if d.df.stageNamed(c.from) == nil && !pinnedImage(c.from) {
				problems = append(problems, fmt.Sprintf("Dockerfile:%d: COPY --from=%s: no such stage, nor a pinned image", c.line, c.from))
			}
			continue
		}
		if len(c.sources) == 0 {
			problems = append(problems, fmt.Sprintf("Dockerfile:%d: COPY without a source", c.line))
		}
		for _, src := range c.sources {
			if _, err := os.Stat(filepath.Join(d.root, src)); err != nil {
				problems = append(problems, fmt.Sprintf("Dockerfile:%d: COPY %s: not in the repository", c.line, src))
			}
			if src == "." {
				continue
			}
			if ignored, err := dockerignored(d.root, src); err != nil || ignored {
				problems = append(problems, fmt.Sprintf("Dockerfile:%d: COPY %s: excluded by .dockerignore (%v)", c.line, src, err))
			}
		}
	}
	return problems
}

// checkMeshEntries requires mesh-config to write mesh/entries the way make
// up does, with podkit mesh-entries (entries.Apply over the files embedded
// at build time, so the two stacks apply one set), from an image of the
// Dockerfile that carries podkit, against the server.
func checkMeshEntries(d *deliverable) []string {
	s, ok := d.service("mesh-config")
	if !ok {
		return []string{"no mesh-config service"}
	}
	var problems []string
	if s.Build == nil || !hasPodkit(d.df, s.Build.Target) {
		problems = append(problems, "mesh-config: not built from a Dockerfile target that carries podkit")
	}
	cmd := append(append([]string{}, s.Entrypoint...), s.Command...)
	if len(cmd) < 2 || path.Base(cmd[0]) != "podkit" || cmd[1] != "mesh-entries" {
		problems = append(problems, fmt.Sprintf("mesh-config runs %q, want podkit mesh-entries", cmd))
	}
	if got := flagValue(cmd, "-http-addr"); got != "http://consul-server:8500" {
		problems = append(problems, fmt.Sprintf("mesh-config: -http-addr %q, want the server", got))
	}
	return problems
}

// hasPodkit says whether the Dockerfile stage target, or a stage it is
// built on, copies podkit in.
func hasPodkit(df dockerfile, target string) bool {
	for st := df.stageNamed(target); st != nil; st = df.stageNamed(st.base) {
		for _, in := range st.instrs {
			if in.cmd == "COPY" && strings.Contains(in.args, "/podkit ") {
				return true
			}
		}
	}
	return false
}

// tracingCollector is the OTLP/gRPC address of the compose stack's Jaeger,
// for the Envoys; the Go processes use its OTLP/HTTP twin.
const (
	tracingCollector = "jaeger:4317"
	otlpHTTPEndpoint = "http://jaeger:4318"
)

// checkTracing requires the trace backend and every process sending to
// it: the Go binaries through the SDK's variables (OTLP/HTTP), the ingress
// through the control plane's TRACING_COLLECTOR_ADDR, the sidecars through
// the proxy-defaults mesh-config writes (its collector moved from the
// files' 127.0.0.1:4317, which no pod has).
func checkTracing(d *deliverable) []string {
	var problems []string
	if j, ok := d.service("jaeger"); !ok || !strings.HasPrefix(j.Image, "jaegertracing/jaeger:") {
		problems = append(problems, "no jaeger service running jaegertracing/jaeger")
	}
	packages := binaryPackages(d.df)
	for _, name := range d.serviceNames() {
		s, _ := d.service(name)
		if s.Build == nil || packages[s.Build.Target] == "" {
			continue
		}
		if got := envValue(s, "OTEL_EXPORTER_OTLP_ENDPOINT"); got != otlpHTTPEndpoint {
			problems = append(problems, fmt.Sprintf("%s: OTEL_EXPORTER_OTLP_ENDPOINT %q, want %s", name, got, otlpHTTPEndpoint))
		}
		if got := envValue(s, "OTEL_EXPORTER_OTLP_PROTOCOL"); got != "http/protobuf" {
			problems = append(problems, fmt.Sprintf("%s: OTEL_EXPORTER_OTLP_PROTOCOL %q, want http/protobuf", name, got))
		}
		if _, ok := s.DependsOn["jaeger"]; !ok {
			problems = append(problems, name+": does not wait for jaeger")
		}
	}
	if cp, ok := d.service("controlplane"); !ok || envValue(cp, "TRACING_COLLECTOR_ADDR") != tracingCollector {
		problems = append(problems, "controlplane: TRACING_COLLECTOR_ADDR is not "+tracingCollector+": the ingress would not trace")
	}
	if mc, ok := d.service("mesh-config"); !ok || flagValue(append(append([]string{}, mc.Entrypoint...), mc.Command...), "-tracing-collector") != tracingCollector {
		problems = append(problems, "mesh-config: -tracing-collector is not "+tracingCollector+": the sidecars would trace to a 127.0.0.1:4317 no pod has")
	}
	return problems
}

func checkDockerfile(d *deliverable) []string {
	var problems []string
	for i, s := range d.df.stages {
		earlier := slices.ContainsFunc(d.df.stages[:i], func(e stage) bool { return e.name == s.base })
		if !earlier && !pinnedImage(s.base) {
			problems = append(problems, fmt.Sprintf("Dockerfile:%d: FROM %s: not an earlier stage, nor pinned to a version", s.line, s.base))
		}
	}
	for _, name := range d.serviceNames() {
		s, _ := d.service(name)
		if s.Build == nil {
			continue
		}
		if s.Build.Context != d.root {
			problems = append(problems, fmt.Sprintf("%s: build context %s, want the repository root", name, s.Build.Context))
		}
		if d.df.stageNamed(s.Build.Target) == nil {
			problems = append(problems, fmt.Sprintf("%s: build target %q is no stage of the Dockerfile", name, s.Build.Target))
		}
	}
	makefile, err := os.ReadFile(filepath.Join(d.root, "Makefile"))
	if err != nil {
		return append(problems, err.Error())
	}
	binaries := regexp.MustCompile(`(?ms)^BINARIES\s*:=(.*?[^\\])$`).FindSubmatch(makefile)
	if binaries == nil {
		return append(problems, "Makefile: no BINARIES")
	}
	built := binaryPackages(d.df)
	for _, m := range regexp.MustCompile(`([a-z]+)=(\./[\w./-]+)`).FindAllSubmatch(binaries[1], -1) {
		name, pkg := string(m[1]), string(m[2])
		if name == "devstack" {
			continue // the `make up` supervisor, which compose replaces
		}
		if built[name] != pkg {
			problems = append(problems, fmt.Sprintf("Dockerfile: builds %s from %q, the Makefile from %s", name, built[name], pkg))
		}
	}
	ldflags := regexp.MustCompile(`(?m)^LDFLAGS\s*:=\s*(.*)$`).FindSubmatch(makefile)
	if ldflags == nil {
		return append(problems, "Makefile: no LDFLAGS")
	}
	want := `-trimpath -ldflags "` + strings.ReplaceAll(strings.TrimSpace(string(ldflags[1])), "$(VERSION)", "${VERSION}") + `"`
	build := d.df.stageNamed("build")
	if build == nil || !slices.ContainsFunc(build.instrs, func(in instruction) bool {
		return in.cmd == "RUN" && strings.Contains(in.args, "go build "+want)
	}) {
		problems = append(problems, fmt.Sprintf("Dockerfile: no `go build %s` in the build stage (the Makefile's flags)", want))
	}
	return problems
}

// scrapeJobs maps each job of a Prometheus configuration to its
// instance labels, and lists the hosts it scrapes.
func scrapeJobs(config []byte) (jobs map[string][]string, hosts []string, err error) {
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string          `json:"targets"`
				Labels  map[string]string `json:"labels"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(config, &cfg); err != nil {
		return nil, nil, err
	}
	jobs = map[string][]string{}
	for _, job := range cfg.ScrapeConfigs {
		for _, sc := range job.StaticConfigs {
			jobs[job.JobName] = append(jobs[job.JobName], sc.Labels["instance"])
			for _, target := range sc.Targets {
				host, _, err := net.SplitHostPort(target)
				if err != nil {
					return nil, nil, err
				}
				hosts = append(hosts, host)
			}
		}
		sort.Strings(jobs[job.JobName])
	}
	return jobs, hosts, nil
}

// checkPrometheus requires the compose scrape config to be the one
// Prometheus loads, with make up's jobs and instances (so rules and
// dashboards apply unchanged), scraping this project's containers.
func checkPrometheus(d *deliverable) []string {
	var problems []string
	composeJobs, hosts, err := scrapeJobs(d.promCompose)
	if err != nil {
		return []string{"prometheus.compose.yml: " + err.Error()}
	}
	makeUpJobs, _, err := scrapeJobs(d.promMakeUp)
	if err != nil {
		return []string{"prometheus.yml: " + err.Error()}
	}
	for job, instances := range makeUpJobs {
		if !slices.Equal(composeJobs[job], instances) {
			problems = append(problems, fmt.Sprintf("job %s: instances %v, make up's %v", job, composeJobs[job], instances))
		}
	}
	for job := range composeJobs {
		if _, ok := makeUpJobs[job]; !ok {
			problems = append(problems, fmt.Sprintf("job %s is not in prometheus.yml", job))
		}
	}
	for _, host := range hosts {
		if _, ok := d.service(host); !ok {
			problems = append(problems, fmt.Sprintf("scrape target host %s is no service", host))
		}
	}
	p, ok := d.service("prometheus")
	if !ok {
		return append(problems, "no prometheus service")
	}
	mounted := false
	for _, v := range p.Volumes {
		if v.Bind && v.Source == filepath.Join(d.root, "observability", "prometheus") {
			mounted = slices.Contains(p.Command, "--config.file="+v.Target+"/prometheus.compose.yml")
		}
	}
	if !mounted {
		problems = append(problems, "prometheus: must load prometheus.compose.yml from the mounted observability/prometheus")
	}
	return problems
}

// workdir returns the working directory a stage ends with, following its
// bases within the Dockerfile.
func (df dockerfile) workdir(name string) string {
	s := df.stageNamed(name)
	if s == nil {
		return "/"
	}
	for i := len(s.instrs) - 1; i >= 0; i-- {
		if s.instrs[i].cmd == "WORKDIR" {
			return s.instrs[i].args
		}
	}
	return df.workdir(s.base)
}

// checkSwaggerUI requires the edge image to hold the Swagger UI assets
// where the edge looks by default (apidocs.DefaultAssetsDir, relative to
// its working directory), installed by edge/scripts/install-swagger-ui.sh
// as `make deps` installs them.
func checkSwaggerUI(d *deliverable) []string {
	var problems []string
	installer := d.df.stageNamed("swagger-ui")
	if installer == nil || !slices.ContainsFunc(installer.instrs, func(in instruction) bool {
		return in.cmd == "RUN" && strings.Contains(in.args, "edge/scripts/install-swagger-ui.sh")
	}) {
		problems = append(problems, "Dockerfile: no swagger-ui stage running edge/scripts/install-swagger-ui.sh")
	}
	want := path.Join(d.df.workdir("edge"), apidocs.DefaultAssetsDir)
	installed := false
	if edge := d.df.stageNamed("edge"); edge != nil {
		for _, in := range edge.instrs {
			fields := strings.Fields(in.args)
			if in.cmd == "COPY" && slices.Contains(fields, "--from=swagger-ui") &&
				strings.HasPrefix(want+"/", strings.TrimSuffix(fields[len(fields)-1], "/")+"/") {
				installed = true
			}
		}
	}
	if !installed {
		problems = append(problems, fmt.Sprintf("Dockerfile: the edge stage does not copy the Swagger UI assets to %s", want))
	}
	for _, name := range d.serviceNames() {
		if s, _ := d.service(name); s.Build != nil && s.Build.Target == "edge" && envValue(s, "EDGE_SWAGGER_UI_DIR") != "" {
			problems = append(problems, name+": EDGE_SWAGGER_UI_DIR points away from the assets the image installs")
		}
	}
	return problems
}
