package main

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/rdma"
)

func TestParseRdmaSink(t *testing.T) {
	o, err := parseRdmaSink([]string{"--listen", "198.18.0.2:7471", "--pcap", "x.pcap", "--once"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.listen != "198.18.0.2:7471" || o.pcap != "x.pcap" || !o.once || !o.track || o.buffers != 512 || o.bufferSize != 2048 {
		t.Errorf("parsed %+v", o)
	}
	if o, err := parseRdmaSink([]string{"--listen", "a:1", "--buffer-size", "9216"}, io.Discard); err != nil || o.bufferSize != 9216 {
		t.Errorf("--buffer-size 9216 (MTU 9000): %+v, %v", o, err)
	}
	for _, bad := range [][]string{{}, {"--listen", "a:1", "extra"}, {"--listen", "a:1", "--buffers", "0"}, {"--nope"},
		{"--listen", "a:1", "--buffer-size", "1000000"}, {"--listen", "a:1", "--buffers", "100000", "--buffer-size", "9216"}} {
		if _, err := parseRdmaSink(bad, io.Discard); err == nil {
			t.Errorf("parseRdmaSink(%q) accepted", strings.Join(bad, " "))
		}
	}
}

// Without -tags rdma the command fails with the stub's ErrNotSupported.
func TestRdmaSinkWithoutTag(t *testing.T) {
	if _, err := rdma.Devices(); !errors.Is(err, rdma.ErrNotSupported) {
		t.Skip("built with -tags rdma")
	}
	err := runRdmaSink(t.Context(), []string{"--listen", "198.18.0.2:7471"})
	if !errors.Is(err, rdma.ErrNotSupported) {
		t.Fatalf("runRdmaSink: %v, want ErrNotSupported", err)
	}
}
