"""Rehearsing the paper scale on a machine without its models or data: tiny stand-ins saved under the
real hub names into a Hugging Face cache laid out as the hub writes it (standins), canonical-format
fixture datasets served by a local mirror (fixtures, mirror), and every notebook executed at scale
`paper` with a step cap (run). Nothing outside this package knows it is a rehearsal: the library
loads the stand-ins and fetches the fixtures through its real paths."""
