package gen

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Why the XDP programs of gen are written here with cilium/ebpf's asm
// package rather than taken from bpf/: the live engine's program is built
// per Template (the payload, checksum and flow-word offsets and the
// precomputed checksum constants are immediates), it needs no C toolchain,
// and gen stays free of an import the package contracts do not list. It is
// 60 instructions and is checked against Template.Stamp by a test that runs
// both on the same input.

// counter is the value of the live program's one-entry array map, which
// the program reads and writes as global data (no lookup, no atomic: only
// the one thread in Live.Send runs it).
type counter struct {
	Next  uint64 // sequence number of the next frame
	Limit uint64 // frames with Next >= Limit are dropped, not sent
	Stamp uint64 // the send time the next Left frames carry
	Left  uint64 // frames that still carry Stamp; at 0 the next frame reads the clock
}

// stampProgram returns the instructions of the live engine's XDP program:
// take the next sequence number from the counter, drop the frame if the
// count is reached, otherwise stamp the flow word, the sequence number and
// the send time into the frame, fix the checksums as Template.Stamp does,
// and return XDP_TX.
//
// The send time is bpf_ktime_get_ns() read once every perClock frames,
// not per frame: the call alone costs a large share of a bare generator's
// rate. With perClock the batch size that costs nothing in accuracy,
// because live mode sends a batch's frames together, when the kernel
// flushes it after the last frame's run: a per-frame reading was already
// up to a batch older than the frame's departure, and so is this one.
// Send zeroes Left before every BPF_PROG_RUN call, so a frame never
// carries a time from before its call (from before a pacing sleep).
func stampProgram(t *Template, mapFD int, perClock uint32) asm.Instructions {
	const (
		ctx  = asm.R6
		seq  = asm.R7
		ts   = asm.R8
		data = asm.R9
	)
	insns := asm.Instructions{
		asm.Mov.Reg(ctx, asm.R1),
		asm.LoadMapValue(asm.R2, mapFD, 0), // r2 = &counter
		asm.LoadMem(seq, asm.R2, 0, asm.DWord),
		asm.LoadMem(asm.R3, asm.R2, 8, asm.DWord),
		asm.JGE.Reg(seq, asm.R3, "drop"),
		asm.Mov.Reg(asm.R3, seq),
		asm.Add.Imm(asm.R3, 1),
		asm.StoreMem(asm.R2, 0, asm.R3, asm.DWord),
		asm.LoadMem(ts, asm.R2, 16, asm.DWord),
		asm.LoadMem(asm.R3, asm.R2, 24, asm.DWord),
		asm.JNE.Imm(asm.R3, 0, "stamped"),
		asm.FnKtimeGetNs.Call(),
		asm.Mov.Reg(ts, asm.R0),
		asm.LoadMapValue(asm.R2, mapFD, 0), // the call clobbered r2
		asm.StoreMem(asm.R2, 16, ts, asm.DWord),
		asm.Mov.Imm(asm.R3, int32(perClock)),
		asm.Add.Imm(asm.R3, -1).WithSymbol("stamped"),
		asm.StoreMem(asm.R2, 24, asm.R3, asm.DWord),
		asm.LoadMem(data, ctx, 0, asm.Word),   // xdp_md.data
		asm.LoadMem(asm.R3, ctx, 4, asm.Word), // xdp_md.data_end
		asm.Mov.Reg(asm.R4, data),
		asm.Add.Imm(asm.R4, int32(t.payOff+PayloadLen)),
		asm.JGT.Reg(asm.R4, asm.R3, "abort"),
		// Flow word: base + seq % flows, big-endian.
		asm.Mov.Reg(asm.R1, seq),
		flowMod(asm.R1, t.cfg.Flows),
		asm.Add.Imm(asm.R1, int32(t.varyBase)),
		asm.And.Imm(asm.R1, 0xffff),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.StoreMem(data, int16(t.varyOff), asm.R1, asm.Half),
		asm.Mov.Reg(asm.R5, asm.R1), // r5: L4 sum
		asm.LoadImm(asm.R2, int64(t.l4K), asm.DWord),
		asm.Add.Reg(asm.R5, asm.R2),
	}
	if t.ipK != 0 {
		insns = append(insns,
			asm.LoadImm(asm.R2, int64(t.ipK), asm.DWord),
			asm.Add.Reg(asm.R2, asm.R1),
		)
		insns = append(insns, foldInsns(asm.R2, asm.R3)...)
		insns = append(insns,
			asm.Xor.Imm(asm.R2, 0xffff),
			asm.StoreMem(data, int16(t.ipCsumOff), asm.R2, asm.Half),
		)
	}
	for i, v := range []asm.Register{seq, ts} {
		off := int16(t.payOff + 4 + 8*i)
		insns = append(insns,
			asm.Mov.Reg(asm.R1, v),
			asm.HostTo(asm.LE, asm.R1, asm.DWord),
			asm.StoreMem(data, off, asm.R1, asm.DWord),
			asm.Mov.Reg32(asm.R2, asm.R1), // low 32 bits, zero-extended
			asm.Add.Reg(asm.R5, asm.R2),
			asm.RSh.Imm(asm.R1, 32),
			asm.Add.Reg(asm.R5, asm.R1),
		)
	}
	insns = append(insns, foldInsns(asm.R5, asm.R3)...)
	insns = append(insns, asm.Xor.Imm(asm.R5, 0xffff))
	if !t.cfg.Proto.tcp() {
		// UDP sends a computed 0 as 0xffff (0 means "no checksum").
		insns = append(insns,
			asm.JNE.Imm(asm.R5, 0, "store"),
			asm.Mov.Imm(asm.R5, 0xffff),
		)
	}
	insns = append(insns,
		asm.StoreMem(data, int16(t.l4CsumOff), asm.R5, asm.Half).WithSymbol("store"),
		asm.Mov.Imm(asm.R0, 3), // XDP_TX
		asm.Return(),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("drop"), // XDP_DROP
		asm.Return(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("abort"), // XDP_ABORTED
		asm.Return(),
	)
	return insns
}

// flowMod is r %= flows, as a mask when flows is a power of two (the
// default 1 among them): a division costs as much as the rest of the
// flow word.
func flowMod(r asm.Register, flows int) asm.Instruction {
	if flows&(flows-1) == 0 {
		return asm.And.Imm(r, int32(flows-1))
	}
	return asm.Mod.Imm(r, int32(flows))
}

// foldInsns folds the one's complement sum in r to 16 bits, using tmp.
func foldInsns(r, tmp asm.Register) asm.Instructions {
	var out asm.Instructions
	for range 4 {
		out = append(out,
			asm.Mov.Reg(tmp, r),
			asm.RSh.Imm(tmp, 16),
			asm.And.Imm(r, 0xffff),
			asm.Add.Reg(r, tmp),
		)
	}
	return out
}

// stamper is the live engine's program and its counter map (nil for a
// bare program).
type stamper struct {
	prog *ebpf.Program
	cnt  *ebpf.Map
}

func newStamper(t *Template, perClock uint32) (*stamper, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "xdpipe_gen_seq",
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  32,
		MaxEntries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("create counter map: %w", err)
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "xdpipe_gen_tx",
		Type:         ebpf.XDP,
		License:      "Dual MIT/GPL",
		Instructions: stampProgram(t, m.FD(), perClock),
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("load stamping XDP program: %w", err)
	}
	return &stamper{prog: p, cnt: m}, nil
}

// newBare is the program of LiveOptions.Bare: XDP_TX, no counter.
func newBare() (*stamper, error) {
	p, err := NewXDPProgram(3, false)
	if err != nil {
		return nil, err
	}
	return &stamper{prog: p}, nil
}

// set is a no-op on a bare program.
func (s *stamper) set(c counter) error {
	if s.cnt == nil {
		return nil
	}
	if err := s.cnt.Put(uint32(0), c); err != nil {
		return fmt.Errorf("set sequence counter: %w", err)
	}
	return nil
}

func (s *stamper) get() (counter, error) {
	var c counter
	if err := s.cnt.Lookup(uint32(0), &c); err != nil {
		return c, fmt.Errorf("read sequence counter: %w", err)
	}
	return c, nil
}

func (s *stamper) Close() error {
	err := s.prog.Close()
	if s.cnt == nil {
		return err
	}
	if e := s.cnt.Close(); err == nil {
		err = e
	}
	return err
}

// NewXDPProgram loads a minimal XDP program that returns action for every
// frame (for example 2, XDP_PASS, on a veth receiver so frames sent into it
// are not lost, or 1, XDP_DROP). Tests and the benchmark use it; it is
// multi-buffer capable when frags is true.
func NewXDPProgram(action uint32, frags bool) (*ebpf.Program, error) {
	spec := &ebpf.ProgramSpec{
		Name:    "xdpipe_gen_act",
		Type:    ebpf.XDP,
		License: "Dual MIT/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, int32(action)),
			asm.Return(),
		},
	}
	if frags {
		spec.Flags = 1 << 5 // BPF_F_XDP_HAS_FRAGS
	}
	p, err := ebpf.NewProgram(spec)
	if err != nil {
		return nil, fmt.Errorf("load XDP program: %w", err)
	}
	return p, nil
}
