#!/usr/bin/env python3
"""Writes Swift value types for every gemma.v1 message, with conversions to and from the
protobuf-c structs of the GemmaProto target.

Input: a FileDescriptorSet (protoc --descriptor_set_out --include_imports). Output: one Swift
file. Run through scripts/gen-proto.sh, never by hand.
"""
import re
import sys

from google.protobuf import descriptor_pb2 as d

FD = d.FieldDescriptorProto
SWIFT_KEYWORDS = {"final", "default", "case", "class", "struct", "enum", "func", "import",
                  "init", "internal", "let", "operator", "private", "protocol", "public",
                  "static", "subscript", "typealias", "var", "break", "continue", "do",
                  "else", "fallthrough", "for", "if", "in", "return", "switch", "where",
                  "while", "as", "is", "nil", "self", "Self", "super", "throw", "throws",
                  "try", "true", "false", "repeat", "type", "extension", "inout", "some"}

SCALARS = {
    FD.TYPE_INT32: ("Int32", "0", "int32_t"),
    FD.TYPE_SINT32: ("Int32", "0", "int32_t"),
    FD.TYPE_SFIXED32: ("Int32", "0", "int32_t"),
    FD.TYPE_UINT32: ("UInt32", "0", "uint32_t"),
    FD.TYPE_FIXED32: ("UInt32", "0", "uint32_t"),
    FD.TYPE_INT64: ("Int64", "0", "int64_t"),
    FD.TYPE_SINT64: ("Int64", "0", "int64_t"),
    FD.TYPE_SFIXED64: ("Int64", "0", "int64_t"),
    FD.TYPE_UINT64: ("UInt64", "0", "uint64_t"),
    FD.TYPE_FIXED64: ("UInt64", "0", "uint64_t"),
    FD.TYPE_FLOAT: ("Float", "0", "float"),
    FD.TYPE_DOUBLE: ("Double", "0", "double"),
}


def snake(name):
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def camel(name):
    # Swift spells the initialism "ID": call_id -> callID, token_ids -> tokenIDs.
    parts = ["ID" if p == "id" else "IDs" if p == "ids" else p for p in name.split("_")]
    if parts[0] in ("ID", "IDs"):
        parts[0] = parts[0].lower()
    s = parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
    return f"`{s}`" if s in SWIFT_KEYWORDS else s


def bare(name):
    return name.strip("`")


class Gen:
    def __init__(self, fds, package):
        self.package = package
        self.prefix_c = "__".join(p.capitalize() for p in package.split(".")) + "__"
        self.prefix_fn = "__".join(package.split(".")) + "__"
        self.messages = {}  # full name -> (DescriptorProto, path list)
        self.enums = {}     # full name -> (EnumDescriptorProto, path list)
        for f in fds.file:
            if f.package != package:
                continue
            for m in f.message_type:
                self.collect_message(m, [])
            for e in f.enum_type:
                self.enums[f".{package}.{e.name}"] = (e, [e.name])
        self.out = []

    def collect_message(self, m, outer):
        path = outer + [m.name]
        self.messages[f".{self.package}." + ".".join(path)] = (m, path)
        for n in m.nested_type:
            self.collect_message(n, path)
        for e in m.enum_type:
            self.enums[f".{self.package}." + ".".join(path + [e.name])] = (e, path + [e.name])

    def c_type(self, path):
        return self.prefix_c + "__".join(path)

    def c_fn(self, path):
        return self.prefix_fn + "__".join(snake(p) for p in path)

    def swift_type(self, path):
        return ".".join(path)

    def enum_const(self, path, value_name):
        return (self.prefix_fn + "__".join(snake(p) for p in path) + "__" + value_name).upper()

    def w(self, line=""):
        self.out.append(line)

    # MARK: enums
    def gen_enum(self, e, path, indent):
        ind = "    " * indent
        self.w(f"{ind}public enum {e.name}: Int32, Sendable, CaseIterable {{")
        for v in e.value:
            self.w(f"{ind}    case {camel(v.name.lower())} = {v.number}")
        self.w(f"{ind}}}")

    # MARK: messages
    def field_swift(self, f):
        """(swift type, default) for a non-oneof field."""
        base, default = self.base_swift(f)
        if f.label == FD.LABEL_REPEATED:
            return f"[{base}]", "[]"
        return base, default

    def base_swift(self, f):
        if f.type in SCALARS:
            return SCALARS[f.type][0], "0"
        if f.type == FD.TYPE_BOOL:
            return "Bool", "false"
        if f.type == FD.TYPE_STRING:
            return "String", '""'
        if f.type == FD.TYPE_BYTES:
            return "[UInt8]", "[]"
        if f.type == FD.TYPE_ENUM:
            e, p = self.enums[f.type_name]
            return "V1." + self.swift_type(p), "." + camel(e.value[0].name.lower())
        if f.type == FD.TYPE_MESSAGE:
            m, p = self.messages[f.type_name]
            return "V1." + self.swift_type(p), "nil"
        raise ValueError(f.type)

    def gen_message(self, m, path, indent):
        ind = "    " * indent
        name = m.name
        self.w(f"{ind}public struct {name}: ProtoMessage {{")
        for n in m.nested_type:
            self.gen_message(n, path + [n.name], indent + 1)
        for e in m.enum_type:
            self.gen_enum(e, path + [e.name], indent + 1)
        oneofs = {i: [] for i in range(len(m.oneof_decl))}
        plain = []
        for f in m.field:
            if f.HasField("oneof_index") and not f.proto3_optional:
                oneofs[f.oneof_index].append(f)
            else:
                plain.append(f)
        for i, fields in oneofs.items():
            oname = m.oneof_decl[i].name
            self.w(f"{ind}    public enum {oname[:1].upper() + camel(oname)[1:]}: Sendable, Equatable {{")
            for f in fields:
                t, _ = self.base_swift(f)
                self.w(f"{ind}        case {camel(f.name)}({t})")
            self.w(f"{ind}    }}")
        for f in plain:
            t, default = self.field_swift(f)
            if f.type == FD.TYPE_MESSAGE and f.label != FD.LABEL_REPEATED:
                self.w(f"{ind}    public var {camel(f.name)}: {t}? = nil")
            else:
                self.w(f"{ind}    public var {camel(f.name)}: {t} = {default}")
        for i in oneofs:
            oname = m.oneof_decl[i].name
            tname = oname[:1].upper() + camel(oname)[1:]
            self.w(f"{ind}    public var {camel(oname)}: {tname}? = nil")
        self.w()
        self.w(f"{ind}    public init() {{}}")
        ct = self.c_type(path)
        fn = self.c_fn(path)
        # from C
        self.w()
        self.w(f"{ind}    init(c: UnsafePointer<{ct}>) throws {{")
        if plain or oneofs:
            self.w(f"{ind}        let m = c.pointee")
        for f in plain:
            self.w(f"{ind}        " + self.read_field(f, f"self.{camel(f.name)}", "m"))
        for i, fields in oneofs.items():
            oname = m.oneof_decl[i].name
            tname = oname[:1].upper() + camel(oname)[1:]
            case_t = f"{ct}__{''.join(p[:1].upper() + p[1:] for p in oname.split('_'))}Case"
            self.w(f"{ind}        switch m.{oname}_case.rawValue {{")
            for f in fields:
                self.w(f"{ind}        case {f.number}:")
                self.w(f"{ind}            " + self.read_value(f, "value", f"m.{f.name}", declare=True))
                self.w(f"{ind}            self.{camel(oname)} = .{camel(f.name)}(value)")
            self.w(f"{ind}        default: self.{camel(oname)} = nil")
            self.w(f"{ind}        }}")
        self.w(f"{ind}    }}")
        # to C
        self.w()
        self.w(f"{ind}    func c(in arena: CArena) -> UnsafeMutablePointer<{ct}> {{")
        self.w(f"{ind}        let p = arena.allocate({ct}.self)")
        self.w(f"{ind}        {fn}__init(p)")
        for f in plain:
            for line in self.write_field(f, f"self.{camel(f.name)}", f"p.pointee.{f.name}", f"p.pointee.n_{f.name}"):
                self.w(f"{ind}        {line}")
        for i, fields in oneofs.items():
            oname = m.oneof_decl[i].name
            self.w(f"{ind}        switch self.{camel(oname)} {{")
            for f in fields:
                self.w(f"{ind}        case .{camel(f.name)}(let value)?:")
                self.w(f"{ind}            p.pointee.{oname}_case = .init(rawValue: {f.number})")
                self.w(f"{ind}            " + self.write_value(f, "value", f"p.pointee.{f.name}"))
            self.w(f"{ind}        case nil: break")
            self.w(f"{ind}        }}")
        self.w(f"{ind}        return p")
        self.w(f"{ind}    }}")
        # pack / unpack
        self.w()
        self.w(f"{ind}    public init(serializedBytes bytes: UnsafeRawBufferPointer) throws {{")
        self.w(f"{ind}        let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)")
        self.w(f"{ind}        guard let c = {fn}__unpack(nil, bytes.count, base) else {{")
        self.w(f'{ind}            throw ProtoError.malformed("{self.package}.{".".join(path)}")')
        self.w(f"{ind}        }}")
        self.w(f"{ind}        defer {{ {fn}__free_unpacked(c, nil) }}")
        self.w(f"{ind}        try self.init(c: c)")
        self.w(f"{ind}    }}")
        self.w()
        self.w(f"{ind}    public func serializedBytes() -> [UInt8] {{")
        self.w(f"{ind}        let arena = CArena()")
        self.w(f"{ind}        let p = c(in: arena)")
        self.w(f"{ind}        let size = {fn}__get_packed_size(p)")
        self.w(f"{ind}        return [UInt8](unsafeUninitializedCapacity: size) {{ buffer, count in")
        self.w(f"{ind}            count = {fn}__pack(p, buffer.baseAddress)")
        self.w(f"{ind}        }}")
        self.w(f"{ind}    }}")
        self.w(f"{ind}}}")
        self.w()

    # Reading a C field into Swift.
    def read_value(self, f, target, src, declare=False):
        let = "let " if declare else ""
        if f.type in SCALARS or f.type == FD.TYPE_BOOL:
            if f.type == FD.TYPE_BOOL:
                return f"{let}{target} = {src} != 0"
            return f"{let}{target} = {src}"
        if f.type == FD.TYPE_STRING:
            return f"{let}{target} = try readString({src})"  # bytes in the C code: see gen-proto.sh
        if f.type == FD.TYPE_BYTES:
            return f"{let}{target} = readBytes({src})"
        if f.type == FD.TYPE_ENUM:
            t, default = self.base_swift(f)
            return f"{let}{target} = {t}(rawValue: Int32(truncatingIfNeeded: {src}.rawValue)) ?? {default}"
        if f.type == FD.TYPE_MESSAGE:
            t, _ = self.base_swift(f)
            if declare:  # a oneof member: protobuf-c sets the pointer with the case
                return f"guard let p = {src} else {{ throw ProtoError.malformed(\"{t}\") }}; let {target} = try {t}(c: p)"
            return f"{target} = try {src}.map {{ try {t}(c: $0) }}"
        raise ValueError

    def read_field(self, f, target, m):
        if f.label == FD.LABEL_REPEATED:
            n = f"{m}.n_{f.name}"
            src = f"{m}.{f.name}"
            if f.type in SCALARS:
                return f"{target} = readArray({src}, {n})"
            if f.type == FD.TYPE_BOOL:
                return f"{target} = readArray({src}, {n}).map {{ $0 != 0 }}"
            if f.type == FD.TYPE_STRING:
                return f"{target} = try readArray({src}, {n}).map {{ try readString($0) }}"
            if f.type == FD.TYPE_BYTES:
                return f"{target} = readArray({src}, {n}).map {{ readBytes($0) }}"
            if f.type == FD.TYPE_ENUM:
                t, default = self.base_swift(f)
                return f"{target} = readArray({src}, {n}).map {{ {t}(rawValue: Int32(truncatingIfNeeded: $0.rawValue)) ?? {default} }}"
            if f.type == FD.TYPE_MESSAGE:
                t, _ = self.base_swift(f)
                return f"{target} = try readArray({src}, {n}).map {{ try {t}(c: $0!) }}"
        return self.read_value(f, target, f"{m}.{f.name}")

    # Writing Swift into a C field.
    def write_value(self, f, value, dst):
        if f.type in SCALARS:
            return f"{dst} = {value}"
        if f.type == FD.TYPE_BOOL:
            return f"{dst} = {value} ? 1 : 0"
        if f.type == FD.TYPE_STRING:
            return f"{dst} = arena.bytes(Array({value}.utf8))"
        if f.type == FD.TYPE_BYTES:
            return f"{dst} = arena.bytes({value})"
        if f.type == FD.TYPE_ENUM:
            return f"{dst} = .init(rawValue: numericCast(UInt32(bitPattern: {value}.rawValue)))"
        if f.type == FD.TYPE_MESSAGE:
            return f"{dst} = {value}.c(in: arena)"
        raise ValueError

    def write_field(self, f, value, dst, ndst):
        if f.label == FD.LABEL_REPEATED:
            if f.type in SCALARS:
                expr = f"arena.array({value})"
            elif f.type == FD.TYPE_BOOL:
                expr = f"arena.array({value}.map {{ $0 ? Int32(1) : 0 }})"
            elif f.type == FD.TYPE_STRING:
                expr = f"arena.array({value}.map {{ arena.bytes(Array($0.utf8)) }})"
            elif f.type == FD.TYPE_BYTES:
                expr = f"arena.array({value}.map {{ arena.bytes($0) }})"
            elif f.type == FD.TYPE_ENUM:
                expr = f"arena.array({value}.map {{ .init(rawValue: numericCast(UInt32(bitPattern: $0.rawValue))) }})"
            else:
                expr = f"arena.array({value}.map {{ Optional($0.c(in: arena)) }})"
            return [f"{ndst} = {value}.count", f"{dst} = {expr}"]
        if f.type == FD.TYPE_MESSAGE:
            return [f"if let value = {value} {{ {dst} = value.c(in: arena) }}"]
        if f.type == FD.TYPE_BOOL:
            return [f"{dst} = {value} ? 1 : 0"]
        return [self.write_value(f, value, dst)]

    def run(self):
        self.w("// Generated by scripts/gen-swift-api.py from Protos/: do not edit. `make proto` regenerates it.")
        self.w("import GemmaProto")
        self.w()
        self.w("/// The gemma.v1 messages as Swift values. Each converts to and from its protobuf-c struct.")
        self.w("public enum V1 {}")
        self.w()
        self.w("extension V1 {")
        for full, (e, path) in sorted(self.enums.items()):
            if len(path) == 1:
                self.gen_enum(e, path, 1)
                self.w()
        for full, (m, path) in sorted(self.messages.items()):
            if len(path) == 1:
                self.gen_message(m, path, 1)
        self.w("}")
        return "\n".join(self.out) + "\n"


def main():
    fds = d.FileDescriptorSet()
    with open(sys.argv[1], "rb") as f:
        fds.ParseFromString(f.read())
    sys.stdout.write(Gen(fds, "gemma.v1").run())


if __name__ == "__main__":
    main()
