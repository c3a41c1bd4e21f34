/// Finds stop strings in streamed text. Text that could still become a stop string is held
/// back, so nothing of a stop string ever reaches the client.
struct StopMatcher {
    let stops: [String]
    private var held = ""
    /// Whether a stop string has been found.
    private(set) var stopped = false

    init(stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }
    }

    /// Adds a delta; returns the text that is safe to send and whether a stop string ended it.
    mutating func feed(_ delta: String) -> (text: String, stopped: Bool) {
        guard !stops.isEmpty else { return (delta, false) }
        held += delta
        // The earliest complete stop string ends the text there.
        var earliest: String.Index?
        for stop in stops {
            if let range = held.range(of: stop), earliest.map({ range.lowerBound < $0 }) ?? true {
                earliest = range.lowerBound
            }
        }
        if let cut = earliest {
            let text = String(held[..<cut])
            held = ""
            stopped = true
            return (text, true)
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        var keep = 0
        for stop in stops {
            for length in stride(from: min(stop.count - 1, held.count), through: 1, by: -1)
            where held.hasSuffix(stop.prefix(length)) {
                keep = max(keep, length)
                break
            }
        }
        let split = held.index(held.endIndex, offsetBy: -keep)
        let text = String(held[..<split])
        held = String(held[split...])
        return (text, false)
    }

    /// The text still held back, for when generation ends without a stop string.
    mutating func flush() -> String {
        defer { held = "" }
        return held
    }
}
