package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

const withoutSysResource = uint64(0x000001fffeffffff) // a bounding set lacking only CAP_SYS_RESOURCE (24)

func TestTargetsFindTheBundleAfterGlobalFlags(t *testing.T) {
	bundles, processes := targets([]string{"--root", "/run/runc", "--log", "/x/log.json", "create", "--bundle",
		"/b/c1", "--pid-file", "/b/pid", "c1"})
	if !reflect.DeepEqual(bundles, []string{"/b/c1/config.json"}) || processes != nil {
		t.Fatalf("bundles %v processes %v", bundles, processes)
	}
	_, processes = targets([]string{"--root", "/run/runc", "exec", "--process", "/tmp/p.json", "c1"})
	if !reflect.DeepEqual(processes, []string{"/tmp/p.json"}) {
		t.Fatalf("processes %v", processes)
	}
	if bundles, _ := targets([]string{"state", "c1"}); bundles != nil {
		t.Fatalf("state reads no bundle: %v", bundles)
	}
}

func TestFilterCapsDropsOnlyWhatTheBoundingSetLacks(t *testing.T) {
	caps := map[string]any{"bounding": []any{"CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN"}}
	if !filterCaps(caps, withoutSysResource) {
		t.Fatal("expected a change")
	}
	if !reflect.DeepEqual(caps["bounding"], []any{"CAP_CHOWN", "CAP_SYS_ADMIN"}) {
		t.Fatalf("got %v", caps["bounding"])
	}
	full := map[string]any{"effective": []any{"CAP_SYS_RESOURCE"}}
	if filterCaps(full, ^uint64(0)) {
		t.Fatal("nothing to drop when the bounding set has everything")
	}
}

func TestRewriteRaisesALowerOOMScoreAdjWithoutSysResource(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	spec := map[string]any{"process": map[string]any{"oomScoreAdj": -998,
		"capabilities": map[string]any{"effective": []any{"CAP_SYS_RESOURCE", "CAP_KILL"}}}}
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rewrite(path, true, withoutSysResource); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	data, _ = os.ReadFile(path)
	_ = json.Unmarshal(data, &got)
	process := got["process"].(map[string]any)
	if process["oomScoreAdj"].(float64) != float64(ownOOMScoreAdj()) {
		t.Fatalf("oomScoreAdj %v", process["oomScoreAdj"])
	}
	if !reflect.DeepEqual(process["capabilities"].(map[string]any)["effective"], []any{"CAP_KILL"}) {
		t.Fatalf("caps %v", process["capabilities"])
	}
}

func TestKillTargetFindsTheContainer(t *testing.T) {
	root, id := killTarget([]string{"--root", "/run/docker/runtime-runc/moby", "--log", "/x", "kill", "--all", "c1", "9"})
	if root != "/run/docker/runtime-runc/moby" || id != "c1" {
		t.Fatalf("root %q id %q", root, id)
	}
	if _, id := killTarget([]string{"--root", "/r", "create", "--bundle", "/b", "c1"}); id != "" {
		t.Fatalf("create is not a kill: %q", id)
	}
}

func TestThawFrozenThawsEveryFrozenCgroupBelow(t *testing.T) {
	dir := t.TempDir()
	deep := filepath.Join(dir, "kubelet.slice", "pod", "scope")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED\n"), 0o644)
	_ = os.WriteFile(filepath.Join(deep, "freezer.state"), []byte("FROZEN\n"), 0o644)
	if n := thawFrozen(dir); n != 1 {
		t.Fatalf("thawed %d", n)
	}
	data, _ := os.ReadFile(filepath.Join(deep, "freezer.state"))
	if string(data) != "THAWED" {
		t.Fatalf("state %q", data)
	}
}
