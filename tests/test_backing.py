"""Backing and MappingPolicy: flags, sizes, names and the memfd's lifetime."""

from __future__ import annotations

import fcntl
import gc
import os

import numpy as np
import pytest

import heapalias as ha
from heapalias.backing import HEAP_SEALS, MAX_HEAP_SIZE, format_size, validate_size
from heapalias.native import lib

from conftest import open_fds


def test_policy_flags() -> None:
    policy = ha.MappingPolicy("memfd", "2m")
    assert policy.hugetlb and not policy.shmem and policy.page_size == 2 << 20
    assert policy.memfd_flags & lib.MFD_HUGETLB and policy.memfd_flags & lib.MFD_CLOEXEC
    assert ha.MappingPolicy("anon", "1g").anon_flags & lib.MAP_HUGE_1GB == lib.MAP_HUGE_1GB
    private = ha.MappingPolicy("private", "4k").anon_flags
    assert private & lib.MAP_PRIVATE and not private & lib.MAP_SHARED
    assert not private & lib.MAP_NORESERVE
    assert ha.MappingPolicy("anon", "thp").shmem
    with pytest.raises(ha.InvalidArgument):
        ha.MappingPolicy("file", "4k")


@pytest.mark.parametrize(
    ("text", "value"),
    [("4096", 4096), ("64K", 65536), ("64KiB", 65536), ("2m", 2 << 20), ("1G", 1 << 30),
     (" 3 MB ", 3 << 20), ("1T", 1 << 40), (8192, 8192)],
)
def test_parse_size(text, value) -> None:
    assert ha.parse_size(text) == value


@pytest.mark.parametrize("bad", ["", "1.5M", "M", "12 parsecs", None, 3.0, [1]])
def test_parse_size_rejects(bad) -> None:
    with pytest.raises(ha.InvalidArgument):
        ha.parse_size(bad)


def test_validate_size_bounds() -> None:
    policy = ha.MappingPolicy("memfd", "4k")
    assert validate_size(MAX_HEAP_SIZE, policy) == MAX_HEAP_SIZE
    assert format_size(3 << 20) == "3 MiB" and format_size(1000) == "1000 B"


def test_memfd_is_cloexec_and_named_and_closed_once() -> None:
    before = open_fds()
    backing = ha.Backing("64K", kind="memfd", name="fdtest")
    fd = backing.fd
    assert os.readlink(f"/proc/self/fd/{fd}") == "/memfd:heapalias:fdtest (deleted)"
    assert not os.get_inheritable(fd)
    assert os.fstat(fd).st_size == 65536
    backing.close()
    backing.close()
    assert backing.closed and backing.fd is None and open_fds() == before


def test_forgotten_backing_does_not_leak_its_fd() -> None:
    before = open_fds()
    ha.Backing("64K")
    gc.collect()
    assert open_fds() == before


def test_anon_backing_has_no_fd_and_maps_once() -> None:
    with ha.Heap("64K", backing="anon") as heap:
        assert heap.fd is None
        with pytest.raises(ha.InvalidArgument, match="first mapping"):
            heap._backing.map_at(heap.view.address, lib.PROT_READ)


@pytest.mark.parametrize("size", [np.int64(8192), np.uint32(8192), np.int16(8192)])
def test_numpy_integers_are_sizes(size) -> None:
    assert ha.parse_size(size) == 8192 and type(ha.parse_size(size)) is int
    with ha.Heap(np.int64(65536)) as heap:
        assert heap.size == 65536


@pytest.mark.parametrize("bad", [np.bool_(True), True, np.float64(4096.0)])
def test_bools_and_floats_are_not_sizes(bad) -> None:
    with pytest.raises(ha.InvalidArgument):
        ha.parse_size(bad)


def test_a_memfd_is_sealed_once_sized_and_stays_sealed() -> None:
    backing = ha.Backing("64K")
    assert fcntl.fcntl(backing.fd, fcntl.F_GET_SEALS) == HEAP_SEALS
    with pytest.raises(PermissionError):
        os.ftruncate(backing.fd, 0)
    with pytest.raises(PermissionError):  # F_SEAL_SEAL: no peer can add F_SEAL_WRITE either
        fcntl.fcntl(backing.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)
    backing.close()
