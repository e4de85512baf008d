package ifname

import (
	"net"
	"testing"
)

func TestIndex(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback interface: %v", err)
	}
	if i, err := Index("lo"); err != nil || i != lo.Index {
		t.Fatalf("Index(lo) = %d, %v; want %d", i, err, lo.Index)
	}
	if _, err := Index("xdpipe-none0"); err == nil {
		t.Fatal("an interface that does not exist was found")
	}
}
