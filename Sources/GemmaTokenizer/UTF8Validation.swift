/// UTF-8 checks shared by input validation and streaming detokenization.
enum UTF8Validation {
    /// Length of the sequence a lead byte starts, or nil for a byte that cannot start one.
    @inline(__always)
    static func sequenceLength(lead: UInt8) -> Int? {
        switch lead {
        case 0x00...0x7F: 1
        case 0xC2...0xDF: 2
        case 0xE0...0xEF: 3
        case 0xF0...0xF4: 4
        default: nil
        }
    }

    /// Allowed range of the byte after `lead` (tighter than 80...BF for E0, ED, F0, F4,
    /// which excludes overlong forms, surrogates and values above U+10FFFF).
    @inline(__always)
    static func secondByteRange(lead: UInt8) -> ClosedRange<UInt8> {
        switch lead {
        case 0xE0: 0xA0...0xBF
        case 0xED: 0x80...0x9F
        case 0xF0: 0x90...0xBF
        case 0xF4: 0x80...0x8F
        default: 0x80...0xBF
        }
    }

    /// Offset of the first byte that does not begin a complete, valid sequence; nil if all valid.
    static func firstInvalidOffset(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var index = 0
        let count = bytes.count
        while index < count {
            let lead = bytes[index]
            if lead < 0x80 { index += 1; continue }
            guard let length = sequenceLength(lead: lead), index + length <= count,
                  secondByteRange(lead: lead).contains(bytes[index + 1])
            else { return index }
            for continuation in 2..<max(length, 2) where !(0x80...0xBF).contains(bytes[index + continuation]) {
                return index
            }
            index += length
        }
        return nil
    }

    /// Number of trailing bytes that form a valid but unfinished sequence (0...3): bytes a
    /// streaming decoder must hold back because the next token may complete them.
    static func incompleteTailLength(_ bytes: [UInt8]) -> Int {
        let count = bytes.count
        guard count > 0 else { return 0 }
        // A sequence is at most 4 bytes, so an unfinished one starts within the last 3.
        for back in 1...min(3, count) {
            let start = count - back
            let lead = bytes[start]
            if (0x80...0xBF).contains(lead) { continue }  // continuation byte: look further back
            guard let length = sequenceLength(lead: lead), length > back else { return 0 }
            // Check that what is there so far could still become a valid sequence.
            if back >= 2, !secondByteRange(lead: lead).contains(bytes[start + 1]) { return 0 }
            return back
        }
        return 0
    }
}
