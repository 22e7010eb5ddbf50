"""Chinese surnames: the frequency table records are drawn from, and how a name's surname is found.

Reference data with no dependency: the masking rule ``surname`` (张三 -> 张*) and the record
generator both read it. Weights follow the rough shape of the national surname ranking
(ten most common, then the next twenty, then thirty more, then rare compounds).
"""

from __future__ import annotations

_SURNAMES_COMMON = "王李张刘陈杨黄赵吴周"  # weight 32 each
_SURNAMES_FREQUENT = "徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹"  # weight 16
_SURNAMES_OTHER = "彭曾肖田董袁潘蔡蒋余于杜叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖"  # weight 8
COMPOUND_SURNAMES = ("欧阳", "司马", "上官", "诸葛", "皇甫", "令狐")  # weight 1
_COMPOUND_SET = frozenset(COMPOUND_SURNAMES)
SURNAME_TABLE = tuple(
    [s for s in _SURNAMES_COMMON for _ in range(32)]
    + [s for s in _SURNAMES_FREQUENT for _ in range(16)]
    + [s for s in _SURNAMES_OTHER for _ in range(8)]
    + list(COMPOUND_SURNAMES)
)


def surname_of(name: str) -> str:
    """Surname of a generated name (compound-aware), for masking 张三 -> 张*."""
    return name[:2] if name[:2] in _COMPOUND_SET else name[:1]
