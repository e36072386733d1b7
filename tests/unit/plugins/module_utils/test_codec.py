"""Key/value codecs: every YAML type to the exact bytes the kernel holds and back, sizes enforced."""
from __future__ import annotations

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils._codec import (
    CodecError, decode_percpu, encode_percpu, make_codec, parse_hex, round_up8, split_percpu, sum_values,
)
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput


@pytest.mark.parametrize("type_name, value, raw", [
    ("u8", 255, b"\xff"),
    ("u16", 0x1234, b"\x34\x12"),
    ("u32", 1, b"\x01\x00\x00\x00"),
    ("u64", 2 ** 40, (2 ** 40).to_bytes(8, "little")),
    ("s8", -1, b"\xff"),
    ("s16", -2, b"\xfe\xff"),
    ("s32", -1, b"\xff\xff\xff\xff"),
    ("s64", -(2 ** 63), (2 ** 63).to_bytes(8, "little")),
    ("be16", 443, b"\x01\xbb"),
    ("be32", 0x0a000001, b"\x0a\x00\x00\x01"),
    ("ipv4", "192.0.2.7", b"\xc0\x00\x02\x07"),
    ("ipv6", "2001:db8::1", bytes.fromhex("20010db8000000000000000000000001")),
    ("mac", "02:00:5e:10:00:01", bytes.fromhex("02005e100001")),
])
def test_round_trip(type_name, value, raw):
    codec = make_codec(type_name, len(raw))
    assert codec.encode(value) == raw
    assert codec.decode(raw) == value


def test_integers_from_strings_and_hex_notation():
    codec = make_codec("u32", 4)
    assert codec.encode("0x10") == codec.encode(16) == codec.encode("16")
    assert codec.encode(True) == b"\x01\x00\x00\x00"


def test_ipv4_is_network_order_so_it_matches_the_packet_field():
    # iphdr.saddr read by the program is the address's bytes in wire order
    assert make_codec("ipv4", 4).encode("10.0.0.1") == bytes([10, 0, 0, 1])


@pytest.mark.parametrize("text", ["0a000001", "0x0a000001", "0a 00 00 01", "0a:00:00:01", "0A-00-00-01"])
def test_hex_spellings(text):
    assert parse_hex(text) == b"\x0a\x00\x00\x01"
    assert make_codec("hex", 4).decode(b"\x0a\x00\x00\x01") == "0a000001"


@pytest.mark.parametrize("type_name, value, message", [
    ("u8", 256, "out of range for u8 (0..255)"),
    ("s8", -129, "out of range for s8 (-128..127)"),
    ("u32", -1, "out of range"),
    ("u32", "ten", "not a valid u32"),
    ("u32", [1], "expected an integer"),
    ("ipv4", "300.1.1.1", "not a valid ipv4"),
    ("ipv4", "2001:db8::1", "not a valid ipv4"),
    ("mac", "02:00:5e", "MAC address"),
])
def test_bad_values_are_refused_with_the_value_and_type(type_name, value, message):
    size = {"u8": 1, "s8": 1, "u32": 4, "ipv4": 4, "mac": 6}[type_name]
    with pytest.raises(CodecError) as exc:
        make_codec(type_name, size).encode(value)
    assert message in exc.value.msg
    assert isinstance(exc.value, InvalidInput)


def test_hex_must_have_exactly_the_map_size():
    codec = make_codec("hex", 4)
    with pytest.raises(CodecError, match="is 5 bytes as hex, but the map's value size is 4 bytes"):
        codec.encode("0102030405")
    with pytest.raises(CodecError, match="quote them"):
        codec.encode(1234)
    with pytest.raises(CodecError, match="even number"):
        codec.encode("123")


@pytest.mark.parametrize("type_name, size", [("u64", 4), ("u32", 8), ("ipv4", 8), ("ipv6", 4), ("mac", 8)])
def test_a_type_that_does_not_fit_the_map_is_refused_before_encoding(type_name, size):
    with pytest.raises(CodecError) as exc:
        make_codec(type_name, size, what="key")
    assert f"key_type {type_name} is" in exc.value.msg
    assert f"the map's key size is {size} bytes" in exc.value.msg


def test_unknown_type_and_btf_without_btf():
    with pytest.raises(CodecError, match="unknown value_type 'float'"):
        make_codec("float", 4)
    with pytest.raises(CodecError, match="carries BTF"):
        make_codec("btf", 4)


def test_sort_keys_order_numbers_and_addresses_naturally():
    u32 = make_codec("u32", 4)
    keys = [u32.encode(n) for n in (256, 2, 1)]
    assert [u32.decode(k) for k in sorted(keys, key=u32.sort_key)] == [1, 2, 256]
    ipv4 = make_codec("ipv4", 4)
    addrs = [ipv4.encode(a) for a in ("10.0.0.2", "9.255.255.255", "10.0.0.10")]
    assert [ipv4.decode(k) for k in sorted(addrs, key=ipv4.sort_key)] == ["9.255.255.255", "10.0.0.2", "10.0.0.10"]


# --- per-CPU --------------------------------------------------------------------------------------
def test_percpu_slots_are_rounded_up_to_8_bytes():
    assert [round_up8(n) for n in (1, 4, 8, 9, 16)] == [8, 8, 8, 16, 16]
    codec = make_codec("u32", 4)
    raw = encode_percpu(7, codec, 3)
    assert raw == (b"\x07\x00\x00\x00" + bytes(4)) * 3
    assert split_percpu(raw, 4, 3) == [b"\x07\x00\x00\x00"] * 3


def test_percpu_list_gives_one_value_per_cpu_and_reads_back_with_sum():
    codec = make_codec("u64", 8)
    raw = encode_percpu([1, 2, 3, 4], codec, 4)
    assert len(raw) == 32
    assert decode_percpu(raw, codec, 4) == ([1, 2, 3, 4], 10)


def test_percpu_list_must_match_the_cpu_count():
    with pytest.raises(CodecError, match="lists 3 per-CPU values but this host has 2 possible CPUs"):
        encode_percpu([1, 2, 3], make_codec("u64", 8), 2)
    with pytest.raises(CodecError, match=r"CPU 1.*out of range"):
        encode_percpu([1, -1], make_codec("u64", 8), 2)


def test_sum_of_structs_is_field_by_field_and_none_for_non_numbers():
    assert sum_values([{"a": 1, "b": [1, 2]}, {"a": 2, "b": [3, 4]}]) == {"a": 3, "b": [4, 6]}
    assert sum_values(["0a", "0b"]) is None
    assert sum_values([{"mode": "FAST"}, {"mode": "SLOW"}]) is None
