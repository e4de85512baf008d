//go:build linux

package bpf

import (
	"testing"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

func TestMain(m *testing.M) { testutil.RunCheckingLeaks(m) }
