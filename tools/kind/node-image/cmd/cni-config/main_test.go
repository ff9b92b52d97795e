package main

import (
	"encoding/json"
	"testing"
)

func TestConflistUsesThePodSubnet(t *testing.T) {
	data, err := conflist("10.245.0.0/16", 1500)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Plugins[0]["type"] != "ptp" || doc.Plugins[1]["type"] != "portmap" {
		t.Fatalf("plugins: %v", doc.Plugins)
	}
	ranges := doc.Plugins[0]["ipam"].(map[string]any)["ranges"].([]any)
	subnet := ranges[0].([]any)[0].(map[string]any)["subnet"]
	if subnet != "10.245.0.0/16" {
		t.Fatalf("subnet %v", subnet)
	}
}

func TestConflistRefusesANonCIDR(t *testing.T) {
	if _, err := conflist("{{ .PodSubnet }}", 1500); err == nil {
		t.Fatal("an unrendered template must be refused")
	}
}
