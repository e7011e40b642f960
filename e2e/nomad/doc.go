// Package nomad runs nomad/portico.nomad.hcl for real (TestNomadRun, build
// tag nomadrun, `make test-nomad`): a Nomad dev agent with the Docker
// driver and Consul Connect places the job on this machine, and the seed's
// curl flow goes through the ingress it placed. The job's static checks
// are in the nomad/ package itself (`make test`).
package nomad
