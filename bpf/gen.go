package bpf

// The generated *_bpfel.go and *_bpfel.o files are committed, so building
// xdpipe needs no clang. `make generate` regenerates them with the pinned
// compiler (clang-14); CI runs `make generate-check`, which fails on any diff.
// The asm/ headers that linux/bpf.h pulls in live in the multiarch directory.
// redirectmeta and steermeta are redirect.c and steer.c built with
// XDPIPE_RX_META: the device-bound variants that read the driver's RX
// metadata (xsk.h). They load into the same objects as their plain
// builds (the programs and maps have the same names).
// The benchmarks' test-only programs are generated from floor_test.go, into
// _test files.

//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -tags linux redirect redirect.c
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -tags linux -type track_state track track.c
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -tags linux -type counter dropcount dropcount.c
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -tags linux -type rule -type gen_info -type exact_key -type lpm4_key -type lpm6_key -type prefix_key -type id_table -type bitmap -type cache_key -type cache_key4 -type cache_val steer steer.c
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -DXDPIPE_RX_META" -target bpfel -tags linux redirectmeta redirect.c
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -DXDPIPE_RX_META" -target bpfel -tags linux steermeta steer.c
