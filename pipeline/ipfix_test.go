package pipeline

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/ipfix"
	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/internal/testutil"
)

// collector is a UDP socket on loopback that the stage exports to.
type collector struct {
	conn *net.UDPConn
	// joined: the stage sent before this collector listened, so the
	// first message's sequence number is taken as it comes.
	joined bool
	// domain is the observation domain of the messages read.
	domain uint32
}

func newCollector(t testing.TB) *collector {
	t.Helper()
	return listenCollector(t, net.IPv4(127, 0, 0, 1))
}

func listenCollector(t testing.TB, ip net.IP) *collector {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &collector{conn: c}
}

// read returns the messages that arrived, decoded, until none comes for
// 200ms. It checks that they come from one socket (a transport session),
// and every message's sequence number against the records before it (from
// 0, or from the first message's when joined).
func (c *collector) read(t *testing.T) (msgs int, templates int, recs []ipfix.Record) {
	t.Helper()
	buf := make([]byte, 65536)
	var seq uint32
	var from string
	for {
		c.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, src, err := c.conn.ReadFromUDP(buf)
		if err != nil {
			return msgs, templates, recs
		}
		if from == "" {
			from = src.String()
		} else if src.String() != from {
			t.Errorf("message %d from %s, the ones before from %s: another transport session", msgs, src, from)
		}
		h, tmpl, r, err := ipfix.Decode(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if msgs == 0 && c.joined {
			seq = h.Sequence
		}
		if msgs == 0 {
			c.domain = h.Domain
		} else if h.Domain != c.domain {
			t.Errorf("message %d of observation domain %d, the ones before of %d", msgs, h.Domain, c.domain)
		}
		if h.Sequence != seq {
			t.Errorf("message %d: sequence %d, want %d (records sent before)", msgs, h.Sequence, seq)
		}
		if n > 1500-28 {
			t.Errorf("message of %d bytes: more than a 1500-byte MTU takes", n)
		}
		seq += uint32(len(r))
		msgs++
		if tmpl {
			templates++
		}
		recs = append(recs, r...)
	}
}

// discard reads and drops what arrives, until the socket closes, so the
// stage's sends keep succeeding.
func (c *collector) discard() {
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, err := c.conn.Read(buf); err != nil {
				return
			}
		}
	}()
}

func newTestIPFIX(t testing.TB, c *collector, o IPFIXOptions) *IPFIX {
	t.Helper()
	o.Collector = c.conn.LocalAddr().String()
	s, err := newIPFIXStage(&o, StageEnv{Queue: 2, Ifindexes: []uint32{7}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { CloseStages([]Stage{s}) })
	return s.(*IPFIX)
}

// flowFrames are n frames over flows UDP flows (source port 40000+i for
// frame i%flows), each with payload bytes of payload.
func flowFrames(t testing.TB, n, flows, payload int) [][]byte {
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = buildFrame(t, frameSpec{sport: uint16(40000 + i%flows), dport: 9, payload: payload})
	}
	return frames
}

// sums adds up records by source port.
func sums(recs []ipfix.Record) (pkts, octets map[uint16]uint64) {
	pkts, octets = map[uint16]uint64{}, map[uint16]uint64{}
	for _, r := range recs {
		pkts[r.SrcPort] += r.Packets
		octets[r.SrcPort] += r.Octets
	}
	return pkts, octets
}

// TestIPFIXExportsEveryPacket: frames over several flows, a stop (Close):
// the collector gets the templates first, one record per flow with the
// packets and IP octets sent, the flow's 5-tuple, ingress interface and
// times, in messages whose sequence numbers are right.
func TestIPFIXExportsEveryPacket(t *testing.T) {
	c := newCollector(t)
	s := newTestIPFIX(t, c, IPFIXOptions{MaxFlows: 100})
	const flows, rounds = 5, 3
	b, _ := burstOf(t, flowFrames(t, 40, flows, 18)...)
	start := monotime.Now()
	for i := range rounds {
		b.Time = start + int64(i)*int64(time.Millisecond)
		s.Process(b)
		s.Tick(b.Time)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	msgs, templates, recs := c.read(t)
	if templates < 1 || len(recs) != flows {
		t.Fatalf("%d messages, %d with templates, %d records: want templates and %d records", msgs, templates, len(recs), flows)
	}
	pkts, octets := sums(recs)
	ipLen := uint64(len(b.Pkts[0].Data) - 14)
	for i := range flows {
		sp := uint16(40000 + i)
		if pkts[sp] != rounds*40/flows || octets[sp] != pkts[sp]*ipLen {
			t.Errorf("flow %d: %d packets, %d octets; want %d, %d", sp, pkts[sp], octets[sp], rounds*40/flows, rounds*40/flows*int(ipLen))
		}
	}
	r := recs[0]
	wantStart := uint64(monotime.Wall(start).UnixMilli())
	if r.V6 || netip.AddrFrom4([4]byte(r.Src[:4])) != ipA || netip.AddrFrom4([4]byte(r.Dst[:4])) != ipB || r.DstPort != 9 ||
		r.Proto != 17 || r.Ingress != 7 || r.VLAN != 0 || r.Start < wantStart-1 || r.Start > wantStart+1 || r.End != r.Start+2 {
		t.Errorf("record %+v; want 198.18.0.1 -> 198.18.0.2:9 udp, ingress 7, from %d for 2 ms", r, wantStart)
	}
	if got := s.Exported.Load(); got != flows || s.Failed.Load() != 0 {
		t.Errorf("exported %d, failed %d; want %d, 0", got, s.Failed.Load(), flows)
	}
	if c.domain != 2 {
		t.Errorf("observation domain %d, want the worker's queue, 2", c.domain)
	}
}

// TestIPFIXCollectorIPv6: a collector on an IPv6 address.
func TestIPFIXCollectorIPv6(t *testing.T) {
	if l, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		l.Close()
	}
	c := listenCollector(t, net.IPv6loopback)
	s := newTestIPFIX(t, c, IPFIXOptions{MaxFlows: 10})
	if s.sess.size != 1500-40-8 {
		t.Errorf("message size %d, want %d under a 1500-byte MTU", s.sess.size, 1500-40-8)
	}
	b, _ := burstOf(t, flowFrames(t, 4, 2, 0)...)
	s.Process(b)
	s.Close()
	if _, templates, recs := c.read(t); templates != 1 || len(recs) != 2 {
		t.Errorf("%d template sets, %d records; want 1, 2", templates, len(recs))
	}
}

// TestIPFIXKeys: IPv6 and VLAN-tagged flows are flows of their own, with
// the IPv6 template and the VLAN ID.
func TestIPFIXKeys(t *testing.T) {
	c := newCollector(t)
	s := newTestIPFIX(t, c, IPFIXOptions{MaxFlows: 10})
	b, _ := burstOf(t,
		buildFrame(t, frameSpec{sport: 1, dport: 2}),
		buildFrame(t, frameSpec{sport: 1, dport: 2, vlan: 0x2000 | 100}), // PCP 1, VID 100
		buildFrame(t, frameSpec{sport: 1, dport: 2, v6: true, payload: 10}),
		buildFrame(t, frameSpec{sport: 1, dport: 2, v6: true, payload: 10}),
		[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 0}, // ARP: not a flow
	)
	s.Process(b)
	s.Close()
	_, _, recs := c.read(t)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3: %+v", len(recs), recs)
	}
	var v6, vlan int
	for _, r := range recs {
		if r.V6 {
			v6++
			if netip.AddrFrom16(r.Src) != ip6A || r.Packets != 2 || r.Octets != 2*(40+8+10) {
				t.Errorf("IPv6 record %+v", r)
			}
		}
		if r.VLAN == 100 {
			vlan++
		}
	}
	if v6 != 1 || vlan != 1 {
		t.Errorf("%d IPv6 and %d VLAN 100 records, want 1 each: %+v", v6, vlan, recs)
	}
}

// TestIPFIXTimeouts: an idle flow is exported and leaves the table; a
// long flow is exported every active timeout with the counts since its
// last record, and its records add up.
func TestIPFIXTimeouts(t *testing.T) {
	c := newCollector(t)
	s := newTestIPFIX(t, c, IPFIXOptions{MaxFlows: 10, ActiveTimeout: 2 * time.Second, IdleTimeout: time.Second})
	long, _ := burstOf(t, flowFrames(t, 1, 1, 0)...)
	short, _ := burstOf(t, buildFrame(t, frameSpec{sport: 50000, dport: 9}))
	sweep := func(now int64) { // a whole sweep at now
		for range ipfixSteps + 1 {
			s.nextStep = 0
			s.Tick(now)
		}
	}
	t0 := monotime.Now()
	short.Time = t0
	s.Process(short)
	// The long flow: a packet every 100ms for 5 s.
	for i := range 50 {
		long.Time = t0 + int64(i)*int64(100*time.Millisecond)
		s.Process(long)
		sweep(long.Time)
	}
	if s.table.n != 1 {
		t.Errorf("%d flows in the table after the short one went idle, want 1", s.table.n)
	}
	s.Close()
	_, _, recs := c.read(t)
	pkts, _ := sums(recs)
	var longRecs int
	for _, r := range recs {
		if r.SrcPort == 40000 {
			longRecs++
			if r.End-r.Start > 2000 {
				t.Errorf("record of %d ms, longer than the active timeout", r.End-r.Start)
			}
		}
	}
	if pkts[50000] != 1 || pkts[40000] != 50 || longRecs != 3 {
		t.Errorf("short flow %d packets, long flow %d in %d records; want 1, and 50 in 3", pkts[50000], pkts[40000], longRecs)
	}
}

// TestIPFIXTableFullEvicts: more flows than the table holds: each new
// flow exports one first, none is lost, and the evictions are counted.
func TestIPFIXTableFullEvicts(t *testing.T) {
	c := newCollector(t)
	s := newTestIPFIX(t, c, IPFIXOptions{MaxFlows: 4})
	const flows = 50
	b, _ := burstOf(t, flowFrames(t, 2*flows, flows, 0)...)
	s.Process(b)
	if s.table.n != 4 {
		t.Errorf("%d flows in a table of 4", s.table.n)
	}
	s.Close()
	_, _, recs := c.read(t)
	pkts, _ := sums(recs)
	var total uint64
	for _, n := range pkts {
		total += n
	}
	if len(pkts) != flows || total != 2*flows || s.Evicted.Load() != 2*flows-4 {
		t.Errorf("%d flows, %d packets, %d evicted; want %d, %d, %d", len(pkts), total, s.Evicted.Load(), flows, 2*flows, 2*flows-4)
	}
}

// TestIPFIXEvictsNoEmptyRecord: a flow whose packets an active timeout
// already exported, evicted from a full table before it saw another, is
// removed without a record: nothing exported counts no packet.
func TestIPFIXEvictsNoEmptyRecord(t *testing.T) {
	c := newCollector(t)
	s := newTestIPFIX(t, c, IPFIXOptions{MaxFlows: 1, ActiveTimeout: time.Second})
	a, _ := burstOf(t, buildFrame(t, frameSpec{sport: 40000, dport: 9}))
	b, _ := burstOf(t, buildFrame(t, frameSpec{sport: 40001, dport: 9}))
	t0 := monotime.Now()
	a.Time = t0
	s.Process(a)
	for range ipfixSteps + 1 { // a whole sweep after the active timeout: a's record
		s.nextStep = 0
		s.Tick(t0 + int64(time.Second))
	}
	b.Time = t0 + int64(time.Second)
	s.Process(b) // evicts a, which counts nothing since its record
	s.Close()
	_, _, recs := c.read(t)
	for _, r := range recs {
		if r.Packets == 0 || r.Octets == 0 {
			t.Errorf("a record of %d packets, %d octets (source port %d)", r.Packets, r.Octets, r.SrcPort)
		}
	}
	if pkts, _ := sums(recs); len(recs) != 2 || pkts[40000] != 1 || pkts[40001] != 1 || s.Evicted.Load() != 1 {
		t.Errorf("%d records %v, %d evicted; want one for each flow, one eviction", len(recs), pkts, s.Evicted.Load())
	}
}

// TestIPFIXShortTotalLength: an IPv4 total length below the header's
// length counts what the frame holds, not the bogus length.
func TestIPFIXShortTotalLength(t *testing.T) {
	c := newCollector(t)
	s := newTestIPFIX(t, c, IPFIXOptions{MaxFlows: 4})
	f := buildFrame(t, frameSpec{sport: 40000, dport: 9, payload: 30})
	binary.BigEndian.PutUint16(f[14+2:], 12) // below the 20-byte header
	b, _ := burstOf(t, f)
	s.Process(b)
	s.Close()
	_, _, recs := c.read(t)
	if _, oct := sums(recs); oct[40000] != uint64(len(f)-14) {
		t.Errorf("%d octets counted, want the %d the frame holds after Ethernet", oct[40000], len(f)-14)
	}
}

// TestIPFIXTemplateRefresh: the templates go out again every
// template_refresh, as the first message of that time.
func TestIPFIXTemplateRefresh(t *testing.T) {
	c := newCollector(t)
	s := newTestIPFIX(t, c, IPFIXOptions{MaxFlows: 4, TemplateRefresh: 2 * time.Second})
	b, _ := burstOf(t, buildFrame(t, frameSpec{sport: 40000, dport: 9}))
	t0 := monotime.Now()
	for i := range 11 { // 5 s, a packet and a sweep every half second
		now := t0 + int64(i)*int64(500*time.Millisecond)
		b.Time = now
		s.Process(b)
		for range ipfixSteps + 1 {
			s.nextStep = 0
			s.Tick(now)
		}
	}
	_, templates, _ := c.read(t)
	if templates != 3 { // at 0, 2 and 4 s
		t.Errorf("%d messages with the templates in 5 s with a 2 s refresh, want 3", templates)
	}
}

// TestIPFIXCollectorGone: a collector that goes away never blocks the
// worker: the records of failed messages are counted, and exports resume
// with the templates once it is back.
func TestIPFIXCollectorGone(t *testing.T) {
	c := newCollector(t)
	addr := c.conn.LocalAddr().(*net.UDPAddr)
	s := newTestIPFIX(t, c, IPFIXOptions{MaxFlows: 2})
	c.conn.Close()
	b, _ := burstOf(t, flowFrames(t, 64, 64, 0)...)
	// export runs n passes of the stage, each with an export step, on a
	// goroutine of its own: the test fails if they block.
	export := func(n int) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range n {
				b.Time = monotime.Now()
				s.Process(b)
				s.nextStep = 0
				s.Tick(b.Time)
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the stage blocked with its collector gone")
		}
	}
	export(50)
	// A message to the port nobody holds comes back as a port unreachable,
	// which the kernel keeps as the socket's error (poll(2) shows it
	// without taking it): the next send fails with it. Unless one failed
	// already, wait for it.
	testutil.Eventually(t, 10*time.Second, func() bool {
		fds := []unix.PollFd{{Fd: int32(s.sess.fd)}}
		n, err := unix.Poll(fds, 0)
		return s.Failed.Load() > 0 || err == nil && n == 1 && fds[0].Revents&unix.POLLERR != 0
	}, "no port unreachable came back from the gone collector")
	export(50)
	if s.Failed.Load() == 0 || s.Evicted.Load() == 0 {
		t.Fatalf("failed %d, evicted %d: want failures counted", s.Failed.Load(), s.Evicted.Load())
	}
	back, err := net.ListenUDP("udp", addr)
	if err != nil {
		t.Skipf("collector port taken meanwhile: %v", err)
	}
	c2 := &collector{conn: back, joined: true}
	t.Cleanup(func() { back.Close() })
	s.Close()
	if _, templates, recs := c2.read(t); templates != 1 || len(recs) != 2 {
		t.Errorf("after the collector came back: %d template sets, %d records; want 1, 2", templates, len(recs))
	}
}

// TestIPFIXSendFailingNoSendPerPass: while every send fails (a route
// gone: ENETUNREACH on each), the templates are retried at most once a
// second, not on every pass (a spinning worker passes millions of times a
// second).
func TestIPFIXSendFailingNoSendPerPass(t *testing.T) {
	s := newTestIPFIX(t, newCollector(t), IPFIXOptions{MaxFlows: 10})
	// An unconnected socket in place of the session's: every write fails
	// (EDESTADDRREQ).
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(s.sess.fd)
	s.sess.fd = fd
	now := monotime.Now()
	for range 10000 { // 10000 passes in 0.5 s
		now += int64(50 * time.Microsecond)
		s.Tick(now)
	}
	if n := s.FailedMessages.Load(); n != 1 {
		t.Errorf("%d sends failed in 0.5 s of passes with nothing to export; want 1", n)
	}
}

// TestIPFIXReloadContinuesSession: a reload's new stage sends in the
// session of the stage it replaces: one socket, sequence numbers without
// a gap, while the old one exports its flows as it closes.
func TestIPFIXReloadContinuesSession(t *testing.T) {
	c := newCollector(t)
	old := newTestIPFIX(t, c, IPFIXOptions{MaxFlows: 100})
	b, _ := burstOf(t, flowFrames(t, 10, 5, 0)...)
	b.Time = monotime.Now()
	old.Tick(b.Time) // the templates
	old.Process(b)
	next := newTestIPFIX(t, c, IPFIXOptions{MaxFlows: 100, IdleTimeout: 5 * time.Second})
	next.Continue(old)
	if next.sess != old.sess {
		t.Fatal("the new stage did not take the old one's session")
	}
	next.Process(b)
	// A stage exporting elsewhere keeps a session of its own.
	other := newTestIPFIX(t, newCollector(t), IPFIXOptions{MaxFlows: 100})
	other.Continue(next)
	if other.sess == next.sess {
		t.Error("a stage exporting elsewhere took the old session")
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	next.Tick(b.Time)
	if err := next.Close(); err != nil {
		t.Fatal(err)
	}
	msgs, templates, recs := c.read(t)
	pkts, _ := sums(recs)
	if templates != 1 || len(recs) != 10 || pkts[40000] != 4 {
		t.Errorf("%d messages, %d with templates, %d records, flow 40000 %d packets; want templates once, 10 records, 4 packets",
			msgs, templates, len(recs), pkts[40000])
	}
}

// TestIPFIXAllocs: counting, expiring, evicting and exporting allocate
// nothing.
func TestIPFIXAllocs(t *testing.T) {
	c := newCollector(t)
	s := newTestIPFIX(t, c, IPFIXOptions{MaxFlows: 16, IdleTimeout: time.Second})
	b, _ := burstOf(t, flowFrames(t, 64, 64, 0)...)
	c.discard()
	now := monotime.Now()
	if a := testing.AllocsPerRun(1000, func() {
		now += int64(100 * time.Millisecond)
		b.Time = now
		s.Process(b)
		s.Tick(now)
	}); a != 0 {
		t.Fatalf("%v allocations per burst", a)
	}
	if s.Evicted.Load() == 0 || s.Exported.Load() == 0 {
		t.Fatalf("nothing evicted (%d) or exported (%d): the test did not exercise the export path", s.Evicted.Load(), s.Exported.Load())
	}
}

// TestIPFIXBadOptions: one line for each bad option.
func TestIPFIXBadOptions(t *testing.T) {
	for _, c := range []struct {
		o    IPFIXOptions
		want string
	}{
		{IPFIXOptions{MaxFlows: 10}, "needs collector"},
		// A service name that /etc/services lacks: no DNS query leaves
		// (cmd/xdpipe's TestRunBadInput has a host name, in a namespace).
		{IPFIXOptions{Collector: "198.18.0.2:nosuchservice", MaxFlows: 10}, `collector "198.18.0.2:nosuchservice" does not resolve`},
		{IPFIXOptions{Collector: "198.18.0.2", MaxFlows: 10}, "missing port"},
		{IPFIXOptions{Collector: "198.18.0.2:0", MaxFlows: 10}, "a port other than 0"},
		{IPFIXOptions{Collector: "198.18.0.2:4739"}, "max_flows 0: want 1..268435456"},
		{IPFIXOptions{Collector: "198.18.0.2:4739", MaxFlows: MaxIPFIXFlows + 1}, "max_flows 268435457"},
		{IPFIXOptions{Collector: "198.18.0.2:4739", MaxFlows: 10, IdleTimeout: time.Millisecond}, "idle_timeout 1ms out of range: want 1s..1h0m0s"},
		{IPFIXOptions{Collector: "198.18.0.2:4739", MaxFlows: 10, ActiveTimeout: 2 * time.Hour}, "active_timeout 2h0m0s out of range"},
		{IPFIXOptions{Collector: "198.18.0.2:4739", MaxFlows: 10, ActiveTimeout: -time.Second}, "active_timeout -1s out of range"},
		{IPFIXOptions{Collector: "198.18.0.2:4739", MaxFlows: 10, TemplateRefresh: 2 * time.Hour}, "template_refresh 2h0m0s out of range"},
	} {
		s, err := newIPFIXStage(&c.o, StageEnv{CheckOnly: true})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: err %v, want one line with %q", c.o, err, c.want)
		}
		if s != nil {
			t.Errorf("%+v: a stage built in check mode", c.o)
		}
	}
}

// TestIPFIXMemoryCost: the cost is the table's slots and the buffer, and
// grows with max_flows.
func TestIPFIXMemoryCost(t *testing.T) {
	o := IPFIXOptions{MaxFlows: 3000}
	if n, setting := o.MemoryCost(); n != 4096*flowSize+ipfixMaxMTU || setting != "max_flows" {
		t.Errorf("cost %d (%s), want 4096 slots of %d bytes and a message", n, setting, flowSize)
	}
	o.MaxFlows = 3073 // 4097 slots at a load of 3/4: 8192
	if n, _ := o.MemoryCost(); n != 8192*flowSize+ipfixMaxMTU {
		t.Errorf("cost %d for 3073 flows, want 8192 slots", n)
	}
}

// BenchmarkStageIPFIX: a burst of 64 packets over 64 flows that are in
// the table (the steady state: count, no export).
func BenchmarkStageIPFIX(b *testing.B) {
	c := newCollector(b)
	s := newTestIPFIX(b, c, IPFIXOptions{MaxFlows: 65536})
	frames := make([][]byte, DefaultBurstSize)
	for i := range frames {
		frames[i] = udp4(b, uint16(i))
	}
	benchFrames(b, s, frames)
}

// BenchmarkStageIPFIXChurn: every packet a new flow in a full table, so
// every packet exports one (the cost of evicting, encoding and sending,
// one message per 28 records).
func BenchmarkStageIPFIXChurn(b *testing.B) {
	c := newCollector(b)
	s := newTestIPFIX(b, c, IPFIXOptions{MaxFlows: 16})
	c.discard()
	frames := make([][]byte, DefaultBurstSize)
	for i := range frames {
		frames[i] = udp4(b, uint16(i))
	}
	benchFrames(b, s, frames)
}
