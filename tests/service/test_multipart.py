"""multipart/form-data bodies read with python-multipart's parser: bodies built by httpx and by hand."""

import httpx
import pytest

from service.multipart import MultipartError, TooManyParts, parse_form


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
    assert parts[1].content_type == "image/png" and parts[0].content_type is None


def test_quoted_boundary_escaped_filename_and_padding():
    body = (b"--a b\r\n"
            b'Content-Disposition: form-data; name="images"; filename="x \\"q\\".png"\r\n\r\nPNG1\r\n'
            b"--a b\r\nContent-Disposition: form-data; name=n\r\n\r\nv\r\n--a b--\r\nepilogue")
    parts = parse_form(body, 'multipart/form-data; boundary="a b"', 10)
    assert [(p.name, p.filename, p.data) for p in parts] == [("images", 'x "q".png', b"PNG1"), ("n", None, b"v")]


@pytest.mark.parametrize("body, ctype, message", [
    (b"--b\r\n\r\nx\r\n--b--", "multipart/form-data", "boundary parameter"),
    (b"--b\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=" + "b" * 71, "boundary parameter"),
    (b"no delimiter at all", "multipart/form-data; boundary=b", "malformed body"),
    (b"preamble\r\n--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b",
     "malformed body"),  # python-multipart reads no preamble (clients send none)
    (b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nunterminated', "multipart/form-data; boundary=b",
     "closing boundary"),
    (b'--b\r\nContent-Disposition: form-data; name="a"', "multipart/form-data; boundary=b", "closing boundary"),
    (b"--bX\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b", "malformed body"),
    (b"--b\r\nnot a header\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b", "malformed body"),
    (b"--b\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b",
     "Content-Disposition"),
    (b"--b\r\n\r\nno headers\r\n--b--", "multipart/form-data; boundary=b", "Content-Disposition"),
])
def test_malformed_bodies_are_refused_with_a_reason(body, ctype, message):
    with pytest.raises(MultipartError, match=message):
        parse_form(body, ctype, 10)


def test_the_part_limit_counts_every_part():
    body, ctype = encoded([("images", (f"{i}.png", b"x", "image/png")) for i in range(5)])
    assert len(parse_form(body, ctype, 5)) == 5
    with pytest.raises(TooManyParts):
        parse_form(body, ctype, 4)
