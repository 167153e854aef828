"""The in-memory multipart/form-data parser against bodies built by httpx and by hand (RFC 2046 cases)."""

import httpx
import pytest

from service.multipart import MultipartError, TooManyParts, header_params, parse_form


def encoded(files: list, data: dict | None = None) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    return request.read(), request.headers["content-type"]


def test_parts_of_an_httpx_body_come_back_exactly():
    payloads = [bytes(range(256)) * 3, b"\r\n--not-a-boundary\r\n", b""]
    body, ctype = encoded([("images", (f"{i}.png", p, "image/png")) for i, p in enumerate(payloads)],
                          {"note": "hello"})
    parts = parse_form(body, ctype, 10)
    assert [(p.name, p.filename) for p in parts] == [("note", None), ("images", "0.png"), ("images", "1.png"),
                                                     ("images", "2.png")]
    assert [p.data for p in parts[1:]] == payloads and parts[0].data == b"hello"
    assert parts[1].content_type == "image/png"


def test_preamble_epilogue_quoted_boundary_and_headerless_part():
    body = (b"preamble to ignore\r\n--a b\r\n"
            b'Content-Disposition: form-data; name="images"; filename="x \\"q\\".png"\r\n\r\nPNG1\r\n'
            b"--a b  \r\n"  # transport padding after a delimiter is allowed
            b"\r\nno headers\r\n--a b--\r\nepilogue")
    with pytest.raises(MultipartError, match="Content-Disposition"):  # the second part has no name
        parse_form(body, 'multipart/form-data; boundary="a b"', 10)
    parts = parse_form(body.replace(b"\r\n\r\nno headers", b"\r\nContent-Disposition: form-data; name=n\r\n\r\nv"),
                       'multipart/form-data; boundary="a b"', 10)
    assert [(p.name, p.filename, p.data) for p in parts] == [("images", 'x "q".png', b"PNG1"), ("n", None, b"v")]


@pytest.mark.parametrize("body, ctype, message", [
    (b"--b\r\n\r\nx\r\n--b--", "multipart/form-data", "boundary parameter"),
    (b"--b\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=" + "b" * 71, "boundary parameter"),
    (b"no delimiter at all", "multipart/form-data; boundary=b", "no boundary delimiter"),
    (b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nunterminated', "multipart/form-data; boundary=b",
     "no closing boundary"),
    (b'--b\r\nContent-Disposition: form-data; name="a"', "multipart/form-data; boundary=b", "not terminated"),
    (b"--bX\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b", "malformed boundary line"),
    (b"--b\r\nnot a header\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b", "malformed part header"),
    (b"--b\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b",
     "Content-Disposition"),
])
def test_malformed_bodies_are_refused_with_a_reason(body, ctype, message):
    with pytest.raises(MultipartError, match=message):
        parse_form(body, ctype, 10)


def test_the_part_limit_counts_every_part():
    body, ctype = encoded([("images", (f"{i}.png", b"x", "image/png")) for i in range(5)])
    assert len(parse_form(body, ctype, 5)) == 5
    with pytest.raises(TooManyParts):
        parse_form(body, ctype, 4)


def test_header_params():
    assert header_params('form-data; name="a;b"; filename=c.png') == ("form-data", {"name": "a;b",
                                                                                    "filename": "c.png"})
    assert header_params("multipart/form-data; BOUNDARY=xyz") == ("multipart/form-data", {"boundary": "xyz"})


@pytest.mark.parametrize("headers", [
    b'Content-Disposition: form-data; name="images"; filename="0.png"\r\nContent-Type: image/png',
    b'content-disposition: form-data; name="images"',
    b'CONTENT-DISPOSITION:form-data; name="note"\r\ncontent-type:  text/plain ',
    b'Content-Disposition: form-data; name="images"; filename="caf\xc3\xa9 \xff.png"',
    b'Content-Disposition: form-data; name=""; filename=""',
])
def test_the_common_header_shape_parses_as_the_general_parser_does(headers):
    from service.multipart import _COMMON_HEADERS, _part, _part_general

    assert _COMMON_HEADERS.fullmatch(headers) is not None  # these take the fast path
    assert _part(headers, b"data") == _part_general(headers, b"data")


@pytest.mark.parametrize("files, data", [
    ([("images", ("a.png", b"\x89PNG" + bytes(range(256)) * 40, "image/png"))], None),
    ([("images", (f"{i}.png", bytes([i]) * (i * 97 % 1000), "image/png")) for i in range(64)], None),
    ([("images", ("b.jpg", b"\r\n--\r\n\r\n--", "image/jpeg")), ("images", ("caf\u00e9.png", b"", "image/png"))],
     {"note": "x y", "other": ""}),
])
def test_parts_equal_python_multipart_on_the_same_body(files, data):
    """The same body through python-multipart's parser (the library this one stands in for: the benchmark's
    variant, benchmarks/ablation_server.py) gives the same parts."""
    from benchmarks.ablation_server import python_multipart_form

    body, ctype = encoded(files, data)
    ours = parse_form(body, ctype, 100)
    assert ours == python_multipart_form(body, ctype, 100) and len(ours) == len(files) + len(data or {})
