"""Tests of the Communications Mining emulator (run over real HTTP)."""
