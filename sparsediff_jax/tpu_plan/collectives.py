"""The collectives of a compiled program, read from its HLO text.

Each all-reduce, all-gather, reduce-scatter, all-to-all and collective-permute instruction
(synchronous or the -start half of an asynchronous pair) is counted once with the bytes of
the array it produces per chip. `traffic` turns those bytes into what one chip sends over
the interconnect with ring algorithms over a group of n chips: an all-reduce 2(n-1)/n times
its bytes, an all-gather or reduce-scatter (n-1)/n times its larger side, a permute or
all-to-all its bytes. A collective inside a loop body is counted once per program, not per
iteration.
"""

import collections
import re

KINDS = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all', 'collective-permute')
_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'f16': 2, 'bf16': 2, 's32': 4,
          'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8, 'c64': 8, 'c128': 16,
          'f8e4m3fn': 1, 'f8e5m2': 1, 's4': 1, 'u4': 1}
_INSTRUCTION = re.compile(
    r'=\s*(?P<shape>.*?)\s(?P<kind>' + '|'.join(KINDS) + r')(?P<start>-start)?\(')
_ARRAY = re.compile(r'\b([a-z]+\d*(?:e\dm\d(?:fn)?)?)\[([\d,]*)\]')
_IOTA_GROUPS = re.compile(r'replica_groups=\[(\d+),(\d+)\]<=')
_LIST_GROUPS = re.compile(r'replica_groups=\{\{([\d,]*)\}')
_MESH_GROUPS = re.compile(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}")


def array_bytes(shape_text: str) -> list[int]:
  """Bytes of each array in an HLO shape ('f32[8,128]{1,0}' or a tuple of them)."""
  sizes = []
  for dtype, dims in _ARRAY.findall(shape_text):
    if dtype in _BYTES:
      n = 1
      for d in filter(None, dims.split(',')):
        n *= int(d)
      sizes.append(n * _BYTES[dtype])
  return sizes


def group_size(line: str, default: int) -> int:
  """Chips per replica group of a collective's HLO line (`default` if it names none)."""
  if m := _IOTA_GROUPS.search(line):
    return int(m[2])
  if m := _LIST_GROUPS.search(line):
    return len([x for x in m[1].split(',') if x])
  if m := _MESH_GROUPS.search(line):   # mesh['axis_0'=4,'axis_1'=2] {'axis_0'}
    sizes = dict(re.findall(r"'([^']+)'=(\d+)", m[1]))
    names = re.findall(r"'([^']+)'", m[2])
    n = 1
    for name in names:
      n *= int(sizes.get(name, 1))
    return n
  return default


def parse(hlo_text: str, chips: int) -> list[dict]:
  """[{kind, bytes, group}] for each collective instruction of the HLO text."""
  found = []
  for line in hlo_text.splitlines():
    m = _INSTRUCTION.search(line)
    if not m or line.lstrip().startswith('//'):
      continue
    sizes = array_bytes(m['shape'])
    if not sizes:
      continue
    # An async start's tuple holds (operand, result, ...): count the larger side once.
    size = max(sizes) if m['start'] and m['kind'] != 'all-reduce' else sum(sizes)
    found.append({'kind': m['kind'], 'bytes': size, 'group': group_size(line, chips)})
  return found


def traffic(collective: dict) -> float:
  """Bytes one chip sends for `collective` with ring algorithms (see module docstring)."""
  n, size = collective['group'], collective['bytes']
  if n <= 1:
    return 0.0
  if collective['kind'] == 'all-reduce':
    return 2.0 * (n - 1) / n * size
  if collective['kind'] in ('all-gather', 'reduce-scatter'):
    return (n - 1) / n * size
  return float(size)


def summarize(found: list[dict]) -> dict:
  """{kind: {'count', 'bytes', 'traffic_bytes'}} over the parsed collectives, plus the
  total traffic under 'traffic_bytes'."""
  out = collections.defaultdict(lambda: {'count': 0, 'bytes': 0, 'traffic_bytes': 0.0})
  for c in found:
    entry = out[c['kind']]
    entry['count'] += 1
    entry['bytes'] += c['bytes']
    entry['traffic_bytes'] += traffic(c)
  return {'by_kind': dict(out),
          'traffic_bytes': sum(e['traffic_bytes'] for e in out.values())}
