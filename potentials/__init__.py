"""Electron scattering-factor parametrization tables (data only), installed as ``temsim._tables``.

See README.md in this folder for the format, sources and citations.
"""
