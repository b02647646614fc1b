"""The tests run against the installed release wheel, not an in-place build."""

from __future__ import annotations

import pathlib
import sysconfig

import overdrive


def test_imported_from_site_packages() -> None:
    site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
    here = pathlib.Path(overdrive.__file__).resolve()
    assert site in here.parents, f"overdrive imported from {here}, not the installed wheel"


def test_build_info_reports_release() -> None:
    info = overdrive.build_info()
    assert info["version"] == overdrive.__version__
    assert info["profile"] == "release"
    assert info["debug_assertions"] is False
    assert info["rustc"].startswith("rustc ")
    assert "mimalloc" in info["features"]
    assert info["zstd"].count(".") == 2


def test_typing_marker_and_stub_ship() -> None:
    pkg = pathlib.Path(overdrive.__file__).parent
    assert (pkg / "py.typed").exists()
    assert (pkg / "_core.pyi").exists()


def test_public_names_exported() -> None:
    for name in overdrive.__all__:
        assert hasattr(overdrive, name), name
