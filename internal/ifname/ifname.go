// Package ifname resolves interface names, for the rules that match on
// them (rules.Set.ResolveIfaces): the steering program's and the filter
// stage's use the one lookup.
package ifname

import "net"

// Index is the index of the interface called name in the calling thread's
// network namespace.
func Index(name string) (int, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	return ifc.Index, nil
}
