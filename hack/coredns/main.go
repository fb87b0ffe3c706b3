// Command coredns is upstream CoreDNS (github.com/coredns/coredns/coremain) with only the
// plugins the local cluster's Corefile uses compiled in. The full plugin set pulls in the
// Azure, AWS, GCP, etcd and Datadog SDKs and would double the cold build for nothing.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
)

func init() {
	// The execution order of the plugins above, as in upstream's plugin.cfg (order matters:
	// a plugin sees only what the ones before it pass on).
	dnsserver.Directives = []string{
		"bind", "ready", "health", "errors", "log", "loadbalance", "template", "kubernetes",
	}
}

func main() {
	coremain.Run()
}
