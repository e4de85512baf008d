//go:build linux

package bpf

import (
	"fmt"
	"math/bits"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// SteerMemory is the kernel memory the maps of one steering program take
// on a machine with cpus possible CPUs (the per-CPU maps hold a value for
// each), worked out from the program's map specs as the kernel accounts
// for it (the maps' map_mem_usage, the memlock line of their fdinfo):
// the flow cache and the rule arrays in full, being preallocated; the
// rule hashes and LPM tries without preallocation as loaded: the hashes'
// buckets, no entries (the rules applied add some, about 2 KiB for each
// bitmap they store). The memory is charged to the memory cgroup of the
// process that loads the program.
func SteerMemory(cpus int) (uint64, error) {
	spec, err := loadSteer()
	if err != nil {
		return 0, fmt.Errorf("steering maps: %w", err)
	}
	sizeSteerMaps(spec, cpus)
	var n uint64
	for _, m := range spec.Maps {
		n += mapMemory(m, cpus, 0)
	}
	return n, nil
}

// Sizes of the kernel's structures (x86-64 and arm64, Linux 6.x) that
// map_mem_usage counts.
const (
	htabElemSize  = 48 // struct htab_elem, before the key
	htabBucket    = 16 // struct bucket: hlist_nulls_head and rqspinlock_t
	llistNodeSize = 8  // struct llist_node, per element of an htab without preallocation
	lpmNodeSize   = 24 // struct lpm_trie_node, before its data
	xskNodeSize   = 24 // struct xsk_map_node, per registered socket
	ptrSize       = 8
)

// mapMemory is what the kernel's map_mem_usage reports for a map of spec
// on cpus possible CPUs holding entries entries (which count only for the
// types that grow: hashes without preallocation, LPM tries, XSKMAP):
// htab_map_mem_usage (kernel/bpf/hashtab.c),
// trie_mem_usage (lpm_trie.c), array_map_mem_usage (arraymap.c),
// xsk_map_mem_usage (xskmap.c), without their few hundred bytes of map
// header.
func mapMemory(spec *ebpf.MapSpec, cpus int, entries uint64) uint64 {
	full, ncpu := uint64(spec.MaxEntries), uint64(cpus)
	key, value := roundUp8(spec.KeySize), roundUp8(spec.ValueSize)
	switch spec.Type {
	case ebpf.Hash, ebpf.LRUHash, ebpf.PerCPUHash, ebpf.LRUCPUHash:
		percpu := spec.Type == ebpf.PerCPUHash || spec.Type == ebpf.LRUCPUHash
		lru := spec.Type == ebpf.LRUHash || spec.Type == ebpf.LRUCPUHash
		elem := htabElemSize + key + value
		if percpu {
			elem = htabElemSize + key + ptrSize // the per-CPU values are apart
		}
		n := roundUpPow2(full) * htabBucket
		if spec.Flags&unix.BPF_F_NO_PREALLOC != 0 && !lru { // the LRU ones are always preallocated
			n += (elem + llistNodeSize) * entries
			if percpu {
				n += value * ncpu * entries
			}
			return n
		}
		if !percpu && !lru {
			full += ncpu // extra_elems: one spare per CPU for updates
		}
		n += elem * full
		if percpu {
			n += value * ncpu * full
		}
		return n
	case ebpf.LPMTrie:
		// The key's data: the key less its 4-byte prefix length.
		return (lpmNodeSize + uint64(spec.KeySize) - 4 + uint64(spec.ValueSize)) * entries
	case ebpf.Array:
		if spec.Flags&unix.BPF_F_MMAPABLE != 0 {
			// The header on a page of its own, the values on whole pages.
			page := uint64(unix.Getpagesize())
			return page + (value*full+page-1)/page*page
		}
		return value * full
	case ebpf.PerCPUArray:
		return ptrSize*full + value*ncpu*full
	case ebpf.XSKMap:
		return ptrSize*full + xskNodeSize*entries
	}
	// Other types: the values, a lower bound.
	return value * full
}

func roundUp8(n uint32) uint64 { return (uint64(n) + 7) &^ 7 }

func roundUpPow2(n uint64) uint64 { return 1 << bits.Len64(n-1) }
