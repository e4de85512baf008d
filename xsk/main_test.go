package xsk

import (
	"testing"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// TestMain fails the package when its tests leave fds or mappings behind
// (AF_XDP sockets, ring mappings, bpf objects).
func TestMain(m *testing.M) { testutil.RunCheckingLeaks(m) }
