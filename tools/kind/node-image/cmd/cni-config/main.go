// cni-config: the node image's default CNI, run as a DaemonSet from /kind/manifests/default-cni.yaml.
// It writes a CNI network configuration for the pod subnet kind renders into the manifest (ptp veth pairs,
// host-local addresses, masquerade for traffic leaving the node, portmap for hostPort), then stays up so
// the DaemonSet reports Ready. One node per kind cluster (the lab's shape) needs no routes to other nodes.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func conflist(subnet string, mtu int) ([]byte, error) {
	if _, _, err := net.ParseCIDR(subnet); err != nil {
		return nil, fmt.Errorf("POD_SUBNET %q is not a CIDR: %w", subnet, err)
	}
	doc := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "kslab",
		"plugins": []any{
			map[string]any{
				"type":   "ptp",
				"ipMasq": true,
				"mtu":    mtu,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": "/run/cni-ipam-state",
					"ranges":  []any{[]any{map[string]any{"subnet": subnet}}},
					"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

func main() {
	dir := os.Getenv("CNI_CONF_DIR")
	if dir == "" {
		dir = "/host/etc/cni/net.d"
	}
	data, err := conflist(os.Getenv("POD_SUBNET"), 1500)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cni-config:", err)
		os.Exit(1)
	}
	target := filepath.Join(dir, "10-kslab.conflist")
	tmp := target + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "cni-config:", err)
		os.Exit(1)
	}
	if err := os.Rename(tmp, target); err != nil { // atomic: the runtime never reads half a file
		fmt.Fprintln(os.Stderr, "cni-config:", err)
		os.Exit(1)
	}
	fmt.Printf("cni-config: wrote %s for pod subnet %s\n", target, os.Getenv("POD_SUBNET"))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
