package pipeline

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/rules"
)

func TestBurstLoadAndResize(t *testing.T) {
	if _, err := NewBurst(MaxBurstSize + 1); err == nil {
		t.Error("oversized burst accepted")
	}
	f := udp4(t, 53)
	b, m := burstOf(t, f, f)
	if b.Len() != 2 || b.Cap() != 2 {
		t.Fatalf("len %d cap %d", b.Len(), b.Cap())
	}
	p := &b.Pkts[1]
	if !bytes.Equal(p.Data, f) || p.Off != uint32(m.DataOffset()) || p.Queue != 3 || p.Time != 12345 || p.Verdict != VerdictKeep || p.Rule != -1 {
		t.Fatalf("packet view wrong: %+v", p)
	}
	addr := p.Addr
	if !p.Resize(-4, len(f)+4) || p.Addr != addr-4 || !bytes.Equal(p.Data[4:], f) {
		t.Fatal("grow into headroom")
	}
	if p.Resize(-int(p.Off)-1, 10) || p.Resize(0, len(p.Frame)) {
		t.Fatal("resize past the frame accepted")
	}
	if d := p.Desc(); d.Addr != p.Addr || d.Len != uint32(len(f)+4) {
		t.Fatalf("desc %+v", d)
	}
	// A loaded burst never exceeds its capacity.
	b.Reset()
	b.Load(m, 0, 0, []Desc{put(t, m, f), put(t, m, f), put(t, m, f)}, 0)
	if b.Len() != 2 {
		t.Fatalf("load past capacity: %d", b.Len())
	}
}

func TestCountDrop(t *testing.T) {
	f := udp4(t, 53)
	b, _ := burstOf(t, f, f, f)
	b.Pkts[1].Verdict = VerdictDrop
	var c Count
	c.Process(b)
	if c.Packets.Load() != 2 || c.Bytes.Load() != uint64(2*len(f)) {
		t.Fatalf("count %d/%d", c.Packets.Load(), c.Bytes.Load())
	}
	(&Drop{}).Process(b)
	for i, p := range b.Pkts {
		if p.Verdict != VerdictDrop {
			t.Errorf("packet %d verdict %v", i, p.Verdict)
		}
	}
}

func TestMacSwap(t *testing.T) {
	f := udp4(t, 53)
	b, _ := burstOf(t, f, f[:10])
	(&MacSwap{}).Process(b)
	p := b.Pkts[0]
	if p.Verdict != VerdictTransmit || !bytes.Equal(p.Data[0:6], macA) || !bytes.Equal(p.Data[6:12], macB) || !bytes.Equal(p.Data[12:], f[12:]) {
		t.Fatalf("macswap: verdict %v data % x", p.Verdict, p.Data[:14])
	}
	if b.Pkts[1].Verdict != VerdictDrop {
		t.Fatalf("runt frame verdict %v", b.Pkts[1].Verdict)
	}
}

func TestForward(t *testing.T) {
	b, _ := burstOf(t, udp4(t, 53), udp4(t, 54))
	b.Pkts[0].Verdict = VerdictDrop
	f := &Forward{To: "eth1"}
	f.Process(b)
	if b.Pkts[1].Verdict != VerdictDrop {
		t.Fatal("unbound forward must drop")
	}
	if err := f.BindOutputs(func(n string) (int, bool) { return 0, false }); err == nil {
		t.Fatal("unknown output bound")
	}
	if err := f.BindOutputs(func(n string) (int, bool) { return 2, n == "eth1" }); err != nil {
		t.Fatal(err)
	}
	b.Pkts[1].Verdict = VerdictKeep
	f.Process(b)
	if b.Pkts[0].Verdict != VerdictDrop || b.Pkts[1].Verdict != VerdictForward || b.Pkts[1].Out != 2 {
		t.Fatalf("verdicts %v %v out %d", b.Pkts[0].Verdict, b.Pkts[1].Verdict, b.Pkts[1].Out)
	}
}

func TestFilter(t *testing.T) {
	b, _ := burstOf(t, udp4(t, 53), udp4(t, 80), udp4(t, 443), udp4(t, 53))
	f := portFilter(t, 53, 443)
	f.Process(b)
	want := []Verdict{VerdictKeep, VerdictDrop, VerdictKeep, VerdictKeep}
	wantRule := []int16{0, -1, 1, 0}
	for i, p := range b.Pkts {
		if p.Verdict != want[i] || p.Rule != wantRule[i] {
			t.Errorf("packet %d: verdict %v rule %d, want %v %d", i, p.Verdict, p.Rule, want[i], wantRule[i])
		}
	}
	if f.Hits[0].Load() != 2 || f.Hits[1].Load() != 1 || f.Misses.Load() != 1 || f.Dropped.Load() != 1 {
		t.Errorf("hits %d %d misses %d dropped %d", f.Hits[0].Load(), f.Hits[1].Load(), f.Misses.Load(), f.Dropped.Load())
	}
	if _, err := NewFilter(nil); err == nil {
		t.Error("nil matcher accepted")
	}
	if _, err := NewRuleMatcher(&rules.Set{Rules: []rules.Rule{{Priority: 1}, {Priority: 1}}}); err == nil {
		t.Error("duplicate priorities accepted")
	}
}

// ipv4ChecksumOK recomputes the IPv4 header checksum from scratch.
func ipv4ChecksumOK(ip []byte) bool {
	ihl := int(ip[0]&0xf) * 4
	var s uint32
	for i := 0; i < ihl; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s) == 0xffff
}

func TestRewrite(t *testing.T) {
	f := buildFrame(t, frameSpec{dport: 53, ttl: 2, tos: 0x03, payload: 30})
	b, _ := burstOf(t, f, f)
	b.Pkts[1].Data[14+8] = 1 // TTL 1: expires (checksum now stale, irrelevant)
	r := &Rewrite{SrcMAC: macB, DstMAC: macA, DecTTL: true, SetDSCP: true, DSCP: 46, PushVLAN: true, VLANTCI: 5<<13 | 100}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	r.Process(b)
	p := b.Pkts[0]
	if len(p.Data) != len(f)+4 {
		t.Fatalf("push: len %d", len(p.Data))
	}
	pkt := gopacket.NewPacket(p.Data, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	vl, _ := pkt.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if eth == nil || vl == nil || ip == nil {
		t.Fatalf("decode after rewrite: %v", pkt)
	}
	if !bytes.Equal(eth.SrcMAC, macB) || !bytes.Equal(eth.DstMAC, macA) || vl.VLANIdentifier != 100 || vl.Priority != 5 {
		t.Errorf("eth %v vlan %v", eth, vl)
	}
	if ip.TTL != 1 || ip.TOS != 46<<2|3 {
		t.Errorf("ttl %d tos %#x", ip.TTL, ip.TOS)
	}
	if !ipv4ChecksumOK(p.Data[18:]) {
		t.Error("incremental checksum wrong")
	}
	if b.Pkts[1].Verdict != VerdictDrop || r.TTLExpired.Load() != 1 {
		t.Errorf("TTL 1 not dropped: %v %d", b.Pkts[1].Verdict, r.TTLExpired.Load())
	}
	// Pop restores the original frame (but for the edits).
	(&Rewrite{PopVLAN: true, SetTTL: 2, SetDSCP: true, DSCP: 0, SrcMAC: macA, DstMAC: macB}).Process(b)
	if !bytes.Equal(b.Pkts[0].Data, f) {
		t.Errorf("pop after push:\n% x\n% x", b.Pkts[0].Data, f)
	}
	if bad := (&Rewrite{DSCP: 64}).Validate(); bad == nil {
		t.Error("DSCP 64 accepted")
	}
}

// TestRewriteDeepTags: a push onto a QinQ frame makes it three tags deep;
// the TTL and DSCP rewrites behind it still happen, the checksum with them.
func TestRewriteDeepTags(t *testing.T) {
	f := buildFrame(t, frameSpec{vlan: 7, dport: 53, ttl: 9, payload: 30})
	// An outer 802.1ad tag in front of the 802.1Q one: QinQ.
	qinq := slices.Concat(f[:12], []byte{0x88, 0xa8, 0x00, 0x05}, f[12:])
	b, _ := burstOf(t, qinq)
	r := &Rewrite{PushVLAN: true, VLANTCI: 100, DecTTL: true, SetDSCP: true, DSCP: 10}
	r.Process(b)
	d := b.Pkts[0].Data
	ip := d[14+3*4:]
	if len(d) != len(qinq)+4 || ip[8] != 8 || ip[1]>>2 != 10 || !ipv4ChecksumOK(ip) {
		t.Fatalf("three tags deep: %d bytes, TTL %d, DSCP %d, checksum ok %v", len(d), ip[8], ip[1]>>2, ipv4ChecksumOK(ip))
	}
}

func TestRewritePushTailroom(t *testing.T) {
	f := udp4(t, 53)
	b, m := burstOf(t, f)
	b.Reset()
	d := Desc{Addr: allocFrame(t, m), Len: uint32(len(f))} // no headroom
	copy(m.Bytes(d), f)
	b.Load(m, 0, 0, []Desc{d}, 0)
	(&Rewrite{PushVLAN: true, VLANTCI: 7}).Process(b)
	p := b.Pkts[0]
	if p.Addr != d.Addr || len(p.Data) != len(f)+4 || !bytes.Equal(p.Data[16:], f[12:]) || !bytes.Equal(p.Data[:12], f[:12]) {
		t.Fatalf("push via tailroom wrong: % x", p.Data[:20])
	}
}

// TestCsumUpdate checks RFC 1624 against a full recomputation for many words.
func TestCsumUpdate(t *testing.T) {
	f := udp4(t, 53)
	ip := append([]byte(nil), f[14:34]...)
	for v := 0; v < 256; v++ {
		for _, i := range []int{1, 8} {
			setIPv4Byte(ip, i, byte(v))
			if !ipv4ChecksumOK(ip) {
				t.Fatalf("byte %d = %d: checksum wrong", i, v)
			}
		}
	}
}

func readPcap(t *testing.T, path string) [][]byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, err := pcapgo.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		out = append(out, data)
	}
	return out
}

func TestPcap(t *testing.T) {
	dir := t.TempDir()
	f := buildFrame(t, frameSpec{dport: 53, payload: 200})
	p, err := NewPcap(PcapOptions{Path: filepath.Join(dir, "cap.pcap"), SnapLen: 100, MaxBytes: 500})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := burstOf(t, f, f, f, f, f, f, f, f, f, f)
	b.Pkts[0].Verdict = VerdictDrop
	p.Process(b)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	files := p.Files()
	total := 0
	for _, name := range files {
		pk := readPcap(t, name)
		for _, d := range pk {
			if !bytes.Equal(d, f[:100]) {
				t.Fatalf("%s: captured bytes differ", name)
			}
		}
		total += len(pk)
		if st, _ := os.Stat(name); st.Size() > 500+116 {
			t.Errorf("%s: %d bytes, rotation at 500", name, st.Size())
		}
	}
	if total != 9 || p.Packets.Load() != 9 || len(files) < 2 {
		t.Fatalf("captured %d in %d files (%v), counter %d", total, len(files), files, p.Packets.Load())
	}
	if !strings.HasSuffix(files[1], "cap.1.pcap") {
		t.Errorf("rotated name %s", files[1])
	}
	t.Run("tshark reads it", func(t *testing.T) {
		testutil.RequireTool(t, "tshark")
		out, err := exec.Command("tshark", "-r", files[0], "-T", "fields", "-e", "frame.len").Output()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, out)
		}
		if n := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; n != len(readPcap(t, files[0])) {
			t.Errorf("tshark read %d frames:\n%s", n, out)
		}
	})
	if _, err := NewPcap(PcapOptions{Path: filepath.Join(dir, "no", "such", "dir.pcap")}); err == nil {
		t.Error("unwritable path accepted")
	}
}

// TestPcapDiskFull: writes to /dev/full fail with ENOSPC; the stage counts
// and reports, keeps verdicts, and retries later.
func TestPcapDiskFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	var logs bytes.Buffer
	// Open on a good file, then point it at /dev/full.
	dir := t.TempDir()
	p, err := NewPcap(PcapOptions{Path: filepath.Join(dir, "c.pcap"), BufferSize: 64, RetryAfter: time.Millisecond,
		Logger: newTestLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	captureFrames(t, p, 1, 100)
	fh, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := p.c
	c.mu.Lock()
	c.f.Close()
	c.f = fh
	c.bw.Reset(fh)
	c.mu.Unlock()
	b, _ := burstOf(t, udp4(t, 1), udp4(t, 2), udp4(t, 3))
	b.Pkts[0].Verdict = VerdictTransmit
	p.Process(b)
	if p.Errors.Load() == 0 || p.Lost.Load() == 0 {
		t.Fatalf("errors %d lost %d", p.Errors.Load(), p.Lost.Load())
	}
	if b.Pkts[0].Verdict != VerdictTransmit || b.Pkts[1].Verdict != VerdictKeep {
		t.Fatal("a failing capture changed verdicts")
	}
	if !strings.Contains(logs.String(), "pcap capture failing") {
		t.Errorf("not reported: %q", logs.String())
	}
	// After RetryAfter the stage opens a fresh file and captures again.
	b.Time += int64(time.Second)
	p.Process(b)
	if p.Packets.Load() != 4 || !strings.Contains(logs.String(), "resumed") {
		t.Fatalf("no recovery: packets %d, logs %q", p.Packets.Load(), logs.String())
	}
}

func TestSample(t *testing.T) {
	f := udp4(t, 53)
	frames := make([][]byte, 10)
	for i := range frames {
		frames[i] = f
	}
	b, _ := burstOf(t, frames...)
	s, err := NewSample(3, 2, 20)
	if err != nil {
		t.Fatal(err)
	}
	s.Process(b) // samples packets 3, 6, 9: two buffers, one dropped
	if s.Sent.Load() != 2 || s.Dropped.Load() != 1 {
		t.Fatalf("sent %d dropped %d", s.Sent.Load(), s.Dropped.Load())
	}
	x := <-s.C()
	if !bytes.Equal(x.Data, f[:20]) || x.Length != len(f) || x.Queue != 3 {
		t.Fatalf("sample %+v", x)
	}
	s.Release(x)
	s.Process(b)
	if s.Sent.Load() != 3 {
		t.Fatalf("after release: sent %d", s.Sent.Load())
	}
	for _, p := range b.Pkts {
		if p.Verdict != VerdictKeep {
			t.Fatal("sample changed a verdict")
		}
	}
	if _, err := NewSample(0, 0, 0); err == nil {
		t.Error("1-in-0 accepted")
	}
}

// TestRewriteIPv6: hop limit and traffic class rewritten behind a VLAN tag,
// the flow label and ECN kept.
func TestRewriteIPv6(t *testing.T) {
	f := buildFrame(t, frameSpec{v6: true, vlan: 7, dport: 53, ttl: 2, tos: 0x02, payload: 30})
	f[18+1] |= 0x0a // a flow label, which the rewrite must keep
	f[18+2], f[18+3] = 0xbc, 0xde
	b, _ := burstOf(t, f, f)
	b.Pkts[1].Data[18+7] = 1 // hop limit 1: expires
	r := &Rewrite{DecTTL: true, SetDSCP: true, DSCP: 46}
	r.Process(b)
	pkt := gopacket.NewPacket(b.Pkts[0].Data, layers.LayerTypeEthernet, gopacket.Default)
	ip, _ := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if ip == nil || udp == nil {
		t.Fatalf("decode after rewrite: %v", pkt)
	}
	if ip.HopLimit != 1 || ip.TrafficClass != 46<<2|0x02 || ip.FlowLabel != 0xabcde {
		t.Errorf("hop limit %d, traffic class %#x, flow label %#x; want 1, %#x, 0xabcde", ip.HopLimit, ip.TrafficClass, ip.FlowLabel, 46<<2|2)
	}
	if b.Pkts[1].Verdict != VerdictDrop || r.TTLExpired.Load() != 1 {
		t.Errorf("hop limit 1 not dropped: %v %d", b.Pkts[1].Verdict, r.TTLExpired.Load())
	}
	// Setting back what was there restores the frame byte for byte.
	(&Rewrite{SetTTL: 2, SetDSCP: true, DSCP: 0}).Process(b)
	if !bytes.Equal(b.Pkts[0].Data, f) {
		t.Errorf("set back:\n% x\n% x", b.Pkts[0].Data, f)
	}
}
