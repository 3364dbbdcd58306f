package main

import "testing"

func TestUDPBufferFlag(t *testing.T) {
	cmd := newServeCmd()
	if err := cmd.Flags().Parse(nil); err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flags().Lookup("udp-buffer").Value.String(); got != "4MiB" {
		t.Errorf("default --udp-buffer = %s, want 4MiB", got)
	}
	if err := applyEnv(cmd.Flags(), func(k string) (string, bool) { return "16MiB", k == "SRS_MESH_UDP_BUFFER" }); err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flags().Lookup("udp-buffer").Value.String(); got != "16MiB" {
		t.Errorf("--udp-buffer from the environment = %s", got)
	}
	for size, ok := range map[byteSize]bool{0: true, 1 << 20: true, 1 << 30: true, 1<<30 + 1: false, -1: false} {
		n, err := udpBuffer(serveOptions{udpBuffer: size})
		if (err == nil) != ok || (ok && n != int(size)) {
			t.Errorf("--udp-buffer %d: %d %v", size, n, err)
		}
	}
}
