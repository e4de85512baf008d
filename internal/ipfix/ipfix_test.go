package ipfix

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

func TestMain(m *testing.M) { testutil.RunCheckingLeaks(m) }

// unhex reads the golden bytes: hex digits, with spaces, newlines and
// "#" comments to the end of a line ignored.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var digits strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	recV4 = Record{Src: [16]byte{198, 18, 0, 1}, Dst: [16]byte{198, 18, 0, 2}, SrcPort: 10000, DstPort: 9, Proto: 17,
		VLAN: 100, Ingress: 7, Packets: 3, Octets: 150, Start: 0x0000018c_00000001, End: 0x0000018c_000003e9}
	recV6 = Record{V6: true, Src: [16]byte{0x20, 0x01, 0, 2, 15: 1}, Dst: [16]byte{0x20, 0x01, 0, 2, 15: 2},
		SrcPort: 443, DstPort: 50000, Proto: 6, Ingress: 2, Packets: 1, Octets: 60, Start: 5, End: 5}
)

// golden is the first message of TestGolden, laid out by hand from RFC
// 7011 (sections 3.1 to 3.4) and the IANA element numbers.
const golden = `
000a 00fa 5f5e1000 00000000 00000003   # version 10, length 250, export time, sequence 0, domain 3
0002 0064                              # template set, length 100
0100 000b                              # template 256, 11 fields
0008 0004  000c 0004  0007 0002  000b 0002  0004 0001  003a 0002  000a 0004   # src4 dst4 sport dport proto vlan ingress
0002 0008  0001 0008  0098 0008  0099 0008                                    # packets octets start-ms end-ms
0101 000b                              # template 257, 11 fields
001b 0010  001c 0010  0007 0002  000b 0002  0004 0001  003a 0002  000a 0004   # src6 dst6 sport dport proto vlan ingress
0002 0008  0001 0008  0098 0008  0099 0008
0100 0037                              # data set 256, length 4+51
c6120001 c6120002 2710 0009 11 0064 00000007
0000000000000003 0000000000000096 0000018c00000001 0000018c000003e9
0101 004f                              # data set 257, length 4+75
20010002000000000000000000000001 20010002000000000000000000000002 01bb c350 06 0000 00000002
0000000000000001 000000000000003c 0000000000000005 0000000000000005
`

// TestGolden: the encoder writes RFC 7011's layout byte for byte, and a
// second message of one set.
func TestGolden(t *testing.T) {
	w, err := NewWriter(1400, 3)
	if err != nil {
		t.Fatal(err)
	}
	w.Begin()
	if !w.AddTemplates() || !w.Add(&recV4) || !w.Add(&recV6) {
		t.Fatal("no room in 1400 bytes")
	}
	got := w.Finish(0x5f5e1000, 0)
	if want := unhex(t, golden); string(got) != string(want) {
		t.Fatalf("message:\n got %x\nwant %x", got, want)
	}
	w.Begin()
	w.Add(&recV4)
	w.Add(&recV4)
	got = w.Finish(0x5f5e1001, 2)
	want := unhex(t, `000a 007a 5f5e1001 00000002 00000003   # length 16+4+2*51, sequence 2
		0100 006a`) // one set of two records
	if string(got[:HeaderLen+SetHeaderLen]) != string(want) || len(got) != 122 {
		t.Fatalf("second message starts %x (%d bytes), want %x (122 bytes)", got[:20], len(got), want)
	}
}

// TestRoundTrip: Decode reads back what the writer wrote, and Add stops
// exactly when the buffer is full.
func TestRoundTrip(t *testing.T) {
	w, _ := NewWriter(MinMessage+RecordLenV4+SetHeaderLen, 9)
	w.Begin()
	if !w.AddTemplates() {
		t.Fatal("templates do not fit")
	}
	var n int
	for i := 0; ; i++ {
		r := recV4
		if i == 1 {
			r = recV6
		}
		if !w.Add(&r) {
			break
		}
		n++
	}
	if n != 2 || w.Records() != 2 {
		t.Fatalf("%d records fit, want 2 (v4, v6)", n)
	}
	msg := w.Finish(1, 0)
	if len(msg) != MinMessage+RecordLenV4+SetHeaderLen {
		t.Fatalf("message of %d bytes, want the whole buffer", len(msg))
	}
	h, tmpl, recs, err := Decode(msg)
	if err != nil || !tmpl || h.Domain != 9 || h.Sequence != 0 || len(recs) != 2 || recs[0] != recV4 || recs[1] != recV6 {
		t.Fatalf("decoded %+v templates %v %+v, %v", h, tmpl, recs, err)
	}
	// Templates go before data.
	if w.AddTemplates() {
		t.Error("templates added after data")
	}
	for _, bad := range [][]byte{msg[:10], msg[:len(msg)-1], append([]byte{0, 9}, msg[2:]...)} {
		if _, _, _, err := Decode(bad); !errors.Is(err, ErrFormat) {
			t.Errorf("decode of a bad message: %v", err)
		}
	}
}

func TestNewWriterSize(t *testing.T) {
	for _, n := range []int{0, MinMessage - 1, MaxMessage + 1} {
		if _, err := NewWriter(n, 0); err == nil {
			t.Errorf("size %d accepted", n)
		}
	}
}

// TestAllocs: writing a message allocates nothing.
func TestAllocs(t *testing.T) {
	w, _ := NewWriter(1400, 0)
	if a := testing.AllocsPerRun(1000, func() {
		w.Begin()
		w.AddTemplates()
		for w.Add(&recV4) {
		}
		w.Finish(0, 0)
	}); a != 0 {
		t.Fatalf("%v allocations per message", a)
	}
}
