"""The `mprobe` command line (installed as the package `manifold_probe_cli`). No science here:
each command parses options, calls the library and prints or writes what it returns."""
