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
