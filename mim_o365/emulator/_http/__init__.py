"""HTTP surfaces of the emulator; each maps requests onto the backends."""
