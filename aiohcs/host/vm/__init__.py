"""The VM backend: VirtualMachine documents run on QEMU (docs/vm.md)."""
