// kslab-runc: an OCI runtime wrapper that takes out of a container's spec what this machine's
// capability bounding set can never grant, then execs the real runc.
//
// Why: a privileged container asks for every capability. On a host (or a kind node) whose
// bounding set lacks one (some VMs drop CAP_SYS_RESOURCE), runc then fails with
// "unable to apply caps: operation not permitted". Dropping exactly what the kernel would
// never grant makes privileged containers start and changes nothing else.
// Without CAP_SYS_RESOURCE a process may also not lower its oom_score_adj, and runc's init
// dies ("can't get final child's PID from pipe") when a spec asks for a lower one (the CRI
// sandbox asks for -998): such a value is raised to the wrapper's own, the lowest allowed.
//
// On cgroup v1, a runc inside a kind node that is killed between freezing a pod's cgroup and thawing
// it (the systemd cgroup driver freezes while it sets device rules) leaves a frozen task that no
// signal reaches, and the node container can then never be killed ("Could not kill running
// container"). Before `kill`, the wrapper thaws every frozen cgroup under the container's freezer
// cgroup; Docker retries a kill that did not take, so a freeze that races the first one is thawed too.
//
// Capabilities appear in two places runc reads: the bundle's config.json (`create`, `run`)
// and the process JSON of `exec --process FILE`.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Linux capability numbers (include/uapi/linux/capability.h), by the names OCI specs use.
var capNumbers = map[string]uint{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
	"CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
	"CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
	"CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18,
	"CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
	"CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28,
	"CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32,
	"CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36,
	"CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}

func boundingSet() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "CapBnd:"); ok {
			return strconv.ParseUint(strings.TrimSpace(rest), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapBnd line in /proc/self/status")
}

// filterCaps removes the capabilities outside `bound` from every list of a capabilities object.
func filterCaps(caps map[string]any, bound uint64) bool {
	changed := false
	for key, value := range caps {
		list, ok := value.([]any)
		if !ok {
			continue
		}
		kept := list[:0:0]
		for _, item := range list {
			name, _ := item.(string)
			if n, known := capNumbers[name]; known && bound&(1<<n) == 0 {
				changed = true
				continue
			}
			kept = append(kept, item)
		}
		caps[key] = kept
	}
	return changed
}

// clampOOMScoreAdj raises process.oomScoreAdj to floor when it asks for less (only a process
// with CAP_SYS_RESOURCE may lower its oom_score_adj below what it inherited).
func clampOOMScoreAdj(process map[string]any, floor int) bool {
	value, ok := process["oomScoreAdj"].(float64)
	if !ok || int(value) >= floor {
		return false
	}
	process["oomScoreAdj"] = floor
	return true
}

func ownOOMScoreAdj() int {
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	value, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0
	}
	return value
}

// rewrite applies filterCaps (and, without CAP_SYS_RESOURCE, clampOOMScoreAdj) to the JSON file at
// path; `nested` selects process.capabilities (a bundle's config.json) rather than capabilities (an
// exec process file).
func rewrite(path string, nested bool, bound uint64) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	holder := doc
	if nested {
		process, ok := doc["process"].(map[string]any)
		if !ok {
			return nil
		}
		holder = process
	}
	changed := false
	if caps, ok := holder["capabilities"].(map[string]any); ok && filterCaps(caps, bound) {
		changed = true
	}
	if nested && bound&(1<<capNumbers["CAP_SYS_RESOURCE"]) == 0 && clampOOMScoreAdj(holder, ownOOMScoreAdj()) {
		changed = true
	}
	if !changed {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, info.Mode().Perm())
}

// killTarget returns runc's state root and the container id of a `kill` invocation, or "" for others.
func killTarget(args []string) (root, id string) {
	root = "/run/runc"
	command := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case command == "" && a == "--root" && i+1 < len(args):
			root = args[i+1]
			i++
		case command == "" && strings.HasPrefix(a, "--root="):
			root = strings.TrimPrefix(a, "--root=")
		case command == "" && (a == "--log" || a == "--log-format" || a == "--criu" || a == "--rootless"):
			i++
		case strings.HasPrefix(a, "-"):
		case command == "":
			command = a
		case command == "kill":
			return root, a
		default:
			return "", ""
		}
	}
	return "", ""
}

// thawFrozen writes THAWED to every FROZEN freezer.state under dir (cgroup v1); it returns how many.
func thawFrozen(dir string) int {
	thawed := 0
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "freezer.state" {
			return nil
		}
		if data, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(data)) == "FROZEN" {
			if os.WriteFile(path, []byte("THAWED"), 0o644) == nil {
				thawed++
			}
		}
		return nil
	})
	return thawed
}

// thawContainer thaws the frozen cgroups under a runc container's freezer cgroup (its state.json names it).
func thawContainer(root, id string) {
	data, err := os.ReadFile(filepath.Join(root, id, "state.json"))
	if err != nil {
		return
	}
	var state struct {
		CgroupPaths map[string]string `json:"cgroup_paths"`
	}
	if json.Unmarshal(data, &state) != nil || state.CgroupPaths["freezer"] == "" {
		return
	}
	if n := thawFrozen(state.CgroupPaths["freezer"]); n > 0 {
		fmt.Fprintf(os.Stderr, "kslab-runc: thawed %d frozen cgroup(s) under container %s before killing it\n", n, id)
	}
}

// targets finds the files runc will read capabilities from in this invocation.
func targets(args []string) (bundles []string, processFiles []string) {
	// runc's global flags that take a separate value come before the command.
	globalsWithValue := map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true,
		"--rootless": true}
	command := ""
	bundle := "."
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() string {
			if strings.Contains(a, "=") {
				return a[strings.Index(a, "=")+1:]
			}
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch {
		case command == "" && globalsWithValue[a]:
			i++ // skip the global flag's value
		case a == "--bundle" || a == "-b" || strings.HasPrefix(a, "--bundle="):
			bundle = value()
		case a == "--process" || a == "-p" || strings.HasPrefix(a, "--process="):
			processFiles = append(processFiles, value())
		case command == "" && !strings.HasPrefix(a, "-"):
			command = a
		}
	}
	if command == "create" || command == "run" {
		bundles = append(bundles, filepath.Join(bundle, "config.json"))
	}
	return bundles, processFiles
}

func main() {
	real := os.Getenv("KSLAB_REAL_RUNC")
	if real == "" {
		real = "/usr/sbin/runc"
		if _, err := os.Stat(real); err != nil {
			real = "/usr/bin/runc"
		}
	}
	if bound, err := boundingSet(); err == nil {
		bundles, processFiles := targets(os.Args[1:])
		for _, p := range bundles {
			if err := rewrite(p, true, bound); err != nil && !os.IsNotExist(err) {
				fmt.Fprintf(os.Stderr, "kslab-runc: %v\n", err)
				os.Exit(1)
			}
		}
		for _, p := range processFiles {
			if err := rewrite(p, false, bound); err != nil {
				fmt.Fprintf(os.Stderr, "kslab-runc: %v\n", err)
				os.Exit(1)
			}
		}
	}
	if root, id := killTarget(os.Args[1:]); id != "" {
		thawContainer(root, id)
	}
	argv := append([]string{real}, os.Args[1:]...)
	if err := syscall.Exec(real, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "kslab-runc: exec %s: %v\n", real, err)
		os.Exit(127)
	}
}
