package xsk

import (
	"errors"
	"fmt"
)

var (
	// ErrNotSupported: the kernel, driver or interface lacks a feature
	// asked for (AF_XDP itself, zero-copy, multi-buffer, shared UMEM on
	// the same queue). Test with errors.Is.
	ErrNotSupported = errors.New("not supported")
	// ErrInvalidOption: an options struct failed validation; nothing was
	// created.
	ErrInvalidOption = errors.New("invalid option")
	// ErrClosed: the Umem or Socket was closed.
	ErrClosed = errors.New("closed")
	// ErrShortBuffer: a multi-buffer packet has more segments than the
	// slice given to ReceivePacket.
	ErrShortBuffer = errors.New("packet has more segments than the buffer")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrInvalidOption)...)
}

// cleanup is a stack of undo functions a constructor runs, newest first,
// when it fails part way.
type cleanup []func()

func (c *cleanup) push(f func()) { *c = append(*c, f) }

func (c cleanup) run() {
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}
