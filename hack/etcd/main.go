// Command etcd is upstream etcd's server main; a wrapper module is needed because
// go.etcd.io/etcd/server/v3 has replace directives and cannot be `go install`ed.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
