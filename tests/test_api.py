"""The public namespace: no name is both a module and a function."""

import importlib
import pkgutil
import types

import robcurves


def test_no_public_name_is_both_module_and_function():
    clashes = []
    for pkg in (robcurves, robcurves.train, robcurves.attacks):
        for info in pkgutil.iter_modules(pkg.__path__):
            full = f"{pkg.__name__}.{info.name}"
            importlib.import_module(full)
            attr = getattr(pkg, info.name, None)
            if attr is not None and not isinstance(attr, types.ModuleType):
                clashes.append(f"{full} is a {type(attr).__name__}")
    assert not clashes, clashes


def test_renamed_modules_hold_their_types():
    import robcurves.bands as bands
    import robcurves.certificates as certificates
    import robcurves.comparison as comparison
    import robcurves.train.loop as loop

    assert bands.Band is robcurves.Band and bands.band is robcurves.band
    assert comparison.compare is robcurves.compare
    assert certificates.certify is robcurves.certify
    assert loop.fit is robcurves.train.fit
