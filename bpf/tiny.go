//go:build linux

package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// DropCount is the XDP_DROP program that counts what it drops (packets and
// bytes, per CPU, summed by Counts). Multi-buffer aware.
type DropCount struct {
	p    program
	objs dropcountObjects
}

// LoadDropCount loads the drop-and-count program and its counters.
func LoadDropCount() (*DropCount, error) {
	if err := removeMemlock(); err != nil {
		return nil, err
	}
	d := &DropCount{}
	if err := loadDropcountObjects(&d.objs, nil); err != nil {
		return nil, fmt.Errorf("load xdp_drop_count program: %w", err)
	}
	d.p = newProgram("xdp_drop_count", d.objs.XdpDropCount, &d.objs, true)
	return d, nil
}

// Attach attaches the program to ifindex with a bpf_link; see Redirect.Attach.
func (d *DropCount) Attach(ifindex int, mode AttachMode) (AttachMode, error) {
	return d.p.attach(ifindex, mode, "")
}

// Counts returns the packets and bytes dropped so far, summed over CPUs.
func (d *DropCount) Counts() (Counter, error) {
	var percpu []dropcountCounter
	if err := d.objs.DropCounts.Lookup(uint32(0), &percpu); err != nil {
		return Counter{}, fmt.Errorf("read drop counters: %w", err)
	}
	return sumCounters(percpu), nil
}

// Program returns the loaded program. Owned by d: valid until Close.
func (d *DropCount) Program() *ebpf.Program { return d.objs.XdpDropCount }

// Close detaches and releases everything. Safe to call more than once.
func (d *DropCount) Close() error { return d.p.close() }
