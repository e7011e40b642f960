package compose

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// localImages parses mesh/images/images.txt: each upstream image and the
// folder that builds its local stand-in ("-" for none).
func localImages(text []byte) map[string]string {
	list := map[string]string{}
	for _, line := range strings.Split(string(text), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			list[f[0]] = f[1]
		}
	}
	return list
}

// infraImage finds the Docker driver's infra_image in a Nomad agent
// configuration.
var infraImage = regexp.MustCompile(`(?m)^\s*infra_image\s*=\s*"([^"]+)"`)

// upstreamImages are the images the compose file runs, the Dockerfile
// builds from and the Nomad dev agent's Docker driver starts (its
// infra_image) that are not built here.
func (d *deliverable) upstreamImages() []string {
	var images []string
	if m := infraImage.FindSubmatch(d.nomadAgent); m != nil {
		images = append(images, string(m[1]))
	}
	for _, name := range d.serviceNames() {
		if s, _ := d.service(name); s.Build == nil && !slices.Contains(images, s.Image) {
			images = append(images, s.Image)
		}
	}
	stages := map[string]bool{}
	for _, s := range d.df.stages {
		if !stages[s.base] && !slices.Contains(images, s.base) {
			images = append(images, s.base)
		}
		stages[s.name] = true
	}
	slices.Sort(images)
	return images
}

// checkLocalImages: mesh/images/images.txt, the list build.sh makes
// available on a machine without a registry, names exactly the upstream
// images of those files, each with a folder that builds it or "-".
func checkLocalImages(d *deliverable) []string {
	var problems []string
	list := localImages(d.localImages)
	upstream := d.upstreamImages()
	for _, image := range upstream {
		if _, ok := list[image]; !ok {
			problems = append(problems, fmt.Sprintf("%s: used, but not in mesh/images/images.txt", image))
		}
	}
	for image, folder := range list {
		if !slices.Contains(upstream, image) {
			problems = append(problems, fmt.Sprintf("mesh/images/images.txt: %s is used by none of the files", image))
		}
		if folder == "-" {
			continue
		}
		if fi, err := os.Stat(filepath.Join(d.root, "mesh", "images", folder)); err != nil || !fi.IsDir() {
			problems = append(problems, fmt.Sprintf("mesh/images/images.txt: %s: no folder mesh/images/%s", image, folder))
		}
	}
	return problems
}
