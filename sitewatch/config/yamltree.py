"""Parse YAML into a tree of nodes that remember their line and path.

PyYAML's ordinary loaders throw the node marks away, and with them any chance of telling the
user where a mistake is. Composing the node graph and constructing only the scalars keeps every
value beside its position. Duplicate keys, which PyYAML silently collapses, are reported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from sitewatch.config.errors import ConfigError, Problem

MAX_DEPTH = 32  # deeper than any real configuration; stops recursive aliases
# libyaml's parser when PyYAML was built with it: some ten times faster, and it refuses nesting
# past 1,000 levels with an error, where the pure-Python one runs out of stack
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Node:
    """A YAML value with its 1-based line and its path from the document root."""

    value: object  # None, bool, int, float, str, date, list[Node] or dict[str, Node]
    line: int
    path: str
    key_lines: dict[str, int] = field(default_factory=dict)  # mapping keys: line of each key

    def child_path(self, key: str | int) -> str:
        """Return the path of a child: `a.b` for keys, `a[3]` for list items."""
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key


def parse(text: str, file: str) -> Node:
    """Return the document in `text` as a node tree, or raise ConfigError."""
    try:
        documents = list(yaml.compose_all(text, Loader=LOADER))
    except RecursionError:
        raise ConfigError([Problem(file, None, "", "not valid YAML: nested too deeply")]) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem(file, line, "", f"not valid YAML: {err.problem}")]) from err
    except yaml.YAMLError as err:  # reader errors: bad encoding, control characters
        raise ConfigError([Problem(file, None, "", f"not valid YAML: {err}")]) from err
    documents = [document for document in documents if document is not None]
    if not documents:
        raise ConfigError([Problem(file, None, "", "the file is empty")])
    if len(documents) > 1:
        line = documents[1].start_mark.line + 1
        raise ConfigError([Problem(file, line, "", "only one YAML document is allowed per file")])
    builder = _TreeBuilder(file)
    tree = builder.build(documents[0], "", 0)
    if builder.problems:
        raise ConfigError(builder.problems)
    return tree


class _TreeBuilder:
    """Turn a composed PyYAML node graph into Nodes, collecting problems on the way."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: str, depth: int) -> Node:
        line = node.start_mark.line + 1
        if depth > MAX_DEPTH:
            self.problems.append(Problem(self.file, line, path, "nested too deeply"))
            return Node(None, line, path)
        if isinstance(node, yaml.SequenceNode):
            items = [
                self.build(item, f"{path}[{index}]", depth + 1)
                for index, item in enumerate(node.value)
            ]
            return Node(items, line, path)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        return Node(self._scalar(node, path), line, path)

    def _mapping(self, node: yaml.MappingNode, path: str, depth: int) -> Node:
        line = node.start_mark.line + 1
        try:
            self.constructor.flatten_mapping(node)  # resolve `<<: *anchor` merge keys
        except yaml.MarkedYAMLError as err:
            self.problems.append(Problem(self.file, line, path, f"bad merge key: {err.problem}"))
            return Node({}, line, path)
        children: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a collection"
                self.problems.append(
                    Problem(self.file, key_line, path, f"keys must be names, not {shown!r}")
                )
                continue
            child_path = f"{path}.{key}" if path else key
            if key in children:
                self.problems.append(
                    Problem(
                        self.file,
                        key_line,
                        child_path,
                        f"duplicate key (first given on line {key_lines[key]})",
                    )
                )
                continue
            key_lines[key] = key_line
            children[key] = self.build(value_node, child_path, depth + 1)
        return Node(children, line, path, key_lines)

    def _scalar(self, node: yaml.Node, path: str) -> object:
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.constructor.ConstructorError, ValueError, TypeError, OverflowError) as err:
            line = node.start_mark.line + 1
            reason = err.problem if isinstance(err, yaml.MarkedYAMLError) else str(err)
            self.problems.append(Problem(self.file, line, path, f"cannot read value: {reason}"))
            return None
