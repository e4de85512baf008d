package gen

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Why a tracepoint rather than the interface's counters: live frames leave
// through XDP_TX turned into a redirect to the same device, queued per CPU
// and handed to the driver's ndo_xdp_xmit at the end of each batch
// (kernel/bpf/devmap.c, bq_xmit_all). The kernel reports every such
// hand-over in the xdp:xdp_devmap_xmit tracepoint with how many frames the
// driver took and how many it refused, for every driver alike, synchronously
// inside our BPF_PROG_RUN. Interface counters differ per driver (veth counts
// on the peer, virtio-net counts completions lazily, on the next transmit)
// and count other traffic too.

// xmitCount is the per-CPU value of the counter map: what the driver took
// and refused of this thread's frames, and the last error it returned.
type xmitCount struct {
	Sent, Drops, Err uint64
}

// xmitCounter counts, with a raw tracepoint program on xdp_devmap_xmit,
// the frames that one thread's live-frames runs handed to a driver. It
// counts only hand-overs made by the thread set with watch and whose
// receiving and transmitting device is the same (XDP_TX).
type xmitCounter struct {
	filter *ebpf.Map // one u64: the thread id to count
	counts *ebpf.Map // per-CPU xmitCount
	prog   *ebpf.Program
	link   link.Link
}

// xmitProgram returns the tracepoint program. Its arguments (TP_PROTO of
// xdp_devmap_xmit) are from_dev, to_dev, sent, drops, err, each in a u64
// slot of the context.
func xmitProgram(filterFD, countsFD int) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetCurrentPidTgid.Call(),
		asm.Mov.Reg32(asm.R7, asm.R0), // thread id: the low 32 bits
		asm.StoreImm(asm.R10, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, filterFD),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.JNE.Reg(asm.R1, asm.R7, "out"),
		asm.LoadMem(asm.R1, asm.R6, 0, asm.DWord), // from_dev
		asm.LoadMem(asm.R2, asm.R6, 8, asm.DWord), // to_dev
		asm.JNE.Reg(asm.R1, asm.R2, "out"),
		asm.LoadMapPtr(asm.R1, countsFD),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R1, asm.R6, 16, asm.Word), // sent
		asm.LoadMem(asm.R2, asm.R0, 0, asm.DWord),
		asm.Add.Reg(asm.R2, asm.R1),
		asm.StoreMem(asm.R0, 0, asm.R2, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, 24, asm.Word), // drops
		asm.LoadMem(asm.R2, asm.R0, 8, asm.DWord),
		asm.Add.Reg(asm.R2, asm.R1),
		asm.StoreMem(asm.R0, 8, asm.R2, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, 32, asm.Word), // err
		asm.JEq.Imm(asm.R1, 0, "out"),
		asm.StoreMem(asm.R0, 16, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
}

func newXmitCounter() (_ *xmitCounter, err error) {
	x := &xmitCounter{}
	defer func() {
		if err != nil {
			x.Close()
		}
	}()
	if x.filter, err = ebpf.NewMap(&ebpf.MapSpec{Name: "xdpipe_gen_tid", Type: ebpf.Array,
		KeySize: 4, ValueSize: 8, MaxEntries: 1}); err != nil {
		return nil, fmt.Errorf("create thread map: %w", err)
	}
	if x.counts, err = ebpf.NewMap(&ebpf.MapSpec{Name: "xdpipe_gen_xmit", Type: ebpf.PerCPUArray,
		KeySize: 4, ValueSize: 24, MaxEntries: 1}); err != nil {
		return nil, fmt.Errorf("create xmit count map: %w", err)
	}
	if x.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "xdpipe_gen_xmit",
		Type:         ebpf.RawTracepoint,
		License:      "Dual MIT/GPL",
		Instructions: xmitProgram(x.filter.FD(), x.counts.FD()),
	}); err != nil {
		return nil, fmt.Errorf("load xdp_devmap_xmit counter: %w", err)
	}
	if x.link, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: "xdp_devmap_xmit", Program: x.prog}); err != nil {
		return nil, fmt.Errorf("attach to tracepoint xdp_devmap_xmit: %w", err)
	}
	return x, nil
}

// watch zeroes the counts and counts the calling thread's frames from now
// on; the caller must stay locked to its OS thread while it sends.
func (x *xmitCounter) watch() error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("zero xmit counts: %w", err)
	}
	if err := x.counts.Put(uint32(0), make([]xmitCount, n)); err != nil {
		return fmt.Errorf("zero xmit counts: %w", err)
	}
	if err := x.filter.Put(uint32(0), uint64(unix.Gettid())); err != nil {
		return fmt.Errorf("set xmit thread: %w", err)
	}
	return nil
}

// read sums the counts over the CPUs; err is the last error a driver
// returned (a negative errno), 0 if none.
func (x *xmitCounter) read() (sent, drops uint64, errno int32, err error) {
	var per []xmitCount
	if err := x.counts.Lookup(uint32(0), &per); err != nil {
		return 0, 0, 0, fmt.Errorf("read xmit counts: %w", err)
	}
	for _, c := range per {
		sent += c.Sent
		drops += c.Drops
		if c.Err != 0 {
			errno = int32(uint32(c.Err))
		}
	}
	return sent, drops, errno, nil
}

// Close detaches and releases the program and maps; safe on a partly made
// counter.
func (x *xmitCounter) Close() error {
	var first error
	keep := func(err error) {
		if first == nil {
			first = err
		}
	}
	if x.link != nil {
		keep(x.link.Close())
	}
	if x.prog != nil {
		keep(x.prog.Close())
	}
	if x.counts != nil {
		keep(x.counts.Close())
	}
	if x.filter != nil {
		keep(x.filter.Close())
	}
	return first
}
