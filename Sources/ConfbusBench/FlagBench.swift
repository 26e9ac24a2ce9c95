import ConfbusClient
import ConfbusCore
import Foundation

/// `ConfbusBench flags [seconds]`: what one flag evaluation costs in a process — the pure rule, and
/// through `ConfbusProvider` as a service calls it — beside its floor, the one SHA-256 of the same
/// text that every evaluation must compute.
enum FlagBench {
    static func run(seconds: Double) {
        let json: JSONValue = [
            "enabled": true, "rollout_percentage": 30, "variants": ["blue": 1, "green": 3],
            "rules": [["attribute": "country", "op": "not_in", "values": ["DE", "FR"], "serve": false],
                      ["attribute": "group", "op": "in", "values": ["beta", "staff"], "serve": true]],
        ]
        let flag = try! FeatureFlag(json: json)
        let pointer = JSONPointer("/flags/new_checkout")!
        let contexts = (0..<4096).map { FlagContext(key: "user-\($0)", attributes: ["country": .string($0 % 2 == 0 ? "DE" : "FR"), "group": "none"]) }
        let texts = contexts.map { Array("feature-flags//flags/new_checkout//\($0.key)".utf8) }
        let provider = ConfbusProvider(service: "feature-flags",
                                       initial: ConfbusSnapshot(version: 1, config: ["flags": ["new_checkout": json]]))

        print(line("floor  one SHA-256 of the hashed text", seconds) { i, sink in sink &+= Int(SHA256.hash(texts[i & 4095])[0]) })
        print(line("FeatureFlag.evaluate (2 rules, variants)", seconds) { i, sink in
            if case .variant(let name) = flag.evaluate(contexts[i & 4095], service: "feature-flags", pointer: pointer).value { sink &+= name.utf8.count }
        })
        print(line("ConfbusProvider.evaluateFlag", seconds) { i, sink in
            if (try? provider.evaluateFlag("/flags/new_checkout", for: contexts[i & 4095]))?.value.isOn == true { sink &+= 1 }
        })
    }

    /// Runs `body` in rounds of 4096 for about `seconds`; ns per call. `sink` keeps the work observable.
    static func line(_ label: String, _ seconds: Double, _ body: (Int, inout Int) -> Void) -> String {
        var sink = 0
        var calls = 0
        let clock = ContinuousClock()
        let start = clock.now
        while (clock.now - start) < .seconds(seconds) {
            for i in 0..<4096 { body(calls + i, &sink) }
            calls += 4096
        }
        let spent = clock.now - start
        let ns = (Double(spent.components.seconds) * 1e9 + Double(spent.components.attoseconds) / 1e9) / Double(calls)
        return label.padding(toLength: 42, withPad: " ", startingAt: 0) + String(format: " %8.0f ns per call  (%d calls, sink %d)", ns, calls, sink & 0xff)
    }
}
