package nomad_test

import (
	"fmt"
	"strings"
	"testing"
	"text/template"
)

// nomadVarItem stands in for consul-template's NomadVarItem, whose Value
// the templates read.
type nomadVarItem struct{ Value string }

// templateFuncs stands in for the consul-template functions the jobs use:
// every Nomad Variable holds every key (value "x-<key>"), every Consul key
// has its default, env echoes the variable's name.
func templateFuncs(present bool) template.FuncMap {
	return template.FuncMap{
		"nomadVar": func(path string) map[string]nomadVarItem {
			if !present {
				return map[string]nomadVarItem{}
			}
			return fullVariable()
		},
		"keyOrDefault": func(_, def string) string { return def },
		"env":          func(name string) string { return "$" + name },
	}
}

// fullVariable is the users variable with every key the jobs read set.
func fullVariable() map[string]nomadVarItem {
	items := map[string]nomadVarItem{}
	for _, key := range []string{"jwt_signing_key", "bootstrap_admin_email", "bootstrap_admin_password"} {
		items[key] = nomadVarItem{Value: "x-" + key}
	}
	return items
}

// TestTemplatesRender parses and renders every template of the jobs with
// stand-ins for Nomad's template functions, with the Nomad Variables full
// and empty: a syntax error would otherwise only show on a client, and an
// env template must render NAME=value lines and nothing else.
func TestTemplatesRender(t *testing.T) {
	bin := nomadBinary(t)
	eachTask(loadJobs(t, bin), func(j job, g taskGroup, tk task) {
		for _, tmpl := range tk.Templates {
			for _, present := range []bool{true, false} {
				out, err := render(tmpl.EmbeddedTmpl, templateFuncs(present))
				if err != nil {
					t.Errorf("%s: template %s: %v", where(j, g, tk), tmpl.DestPath, err)
					continue
				}
				if tmpl.Envvars {
					for _, line := range strings.Split(out, "\n") {
						if line = strings.TrimSpace(line); line != "" && !envLine.MatchString(line) {
							t.Errorf("%s: env template %s renders %q, not NAME=value", where(j, g, tk), tmpl.DestPath, line)
						}
					}
				}
			}
		}
	})
}

func render(text string, funcs template.FuncMap) (string, error) {
	tmpl, err := template.New("").Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	if err := tmpl.Execute(&out, nil); err != nil {
		return "", fmt.Errorf("render: %w", err)
	}
	return out.String(), nil
}

// TestTemplatesRenderAdminOnlyWithBothKeys: the admin account's variables
// appear together or not at all, as the users service requires.
func TestTemplatesRenderAdminOnlyWithBothKeys(t *testing.T) {
	bin := nomadBinary(t)
	users := taskNamed(t, loadJobs(t, bin), "users")
	for _, tmpl := range users.Templates {
		if !strings.Contains(tmpl.EmbeddedTmpl, "BOOTSTRAP_ADMIN_EMAIL") {
			continue
		}
		for name, items := range map[string]map[string]nomadVarItem{
			"both":          fullVariable(),
			"email only":    {"bootstrap_admin_email": {Value: "admin@example.com"}},
			"password only": {"bootstrap_admin_password": {Value: "secret"}},
		} {
			funcs := templateFuncs(true)
			funcs["nomadVar"] = func(string) map[string]nomadVarItem { return items }
			out, err := render(tmpl.EmbeddedTmpl, funcs)
			if err != nil {
				t.Fatal(err)
			}
			email, password := strings.Contains(out, "BOOTSTRAP_ADMIN_EMAIL="), strings.Contains(out, "BOOTSTRAP_ADMIN_PASSWORD=")
			if email != password || email != (name == "both") {
				t.Errorf("%s: rendered %q", name, out)
			}
		}
		return
	}
	t.Fatal("no template of the users task sets BOOTSTRAP_ADMIN_EMAIL")
}
