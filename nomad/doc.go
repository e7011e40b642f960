// Package nomad holds the Nomad job specifications that run Portico on a
// Nomad cluster with Consul Connect (*.nomad.hcl, see README.md). It has no
// Go code of its own: its tests check the jobs with the pinned Nomad binary
// (`nomad fmt`, `nomad job validate`, `nomad job run -output`) and hold them
// to what the binaries read and what mesh/entries allows.
package nomad
