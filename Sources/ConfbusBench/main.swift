import ConfbusCore
import ConfbusEngine
import ConfbusSchema
import ConfbusYAML
import Foundation

// confbus's benchmark driver (run by scripts/bench on a release build).
//   ConfbusBench validate <config-dir> [seconds]   validations per second of each example config
//   ConfbusBench generate <config-dir> <out-dir> <count>   a tree of <count> services for `confbus validate`
//   ConfbusBench flags <seconds>   ns per flag evaluation beside one SHA-256

func elapsed(_ body: () -> Void) -> Double {
    let clock = ContinuousClock()
    let d = clock.measure(body)
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(2)
}

let args = CommandLine.arguments
guard args.count >= 3 else { fail("usage: ConfbusBench validate <config-dir> [seconds] | generate <config-dir> <out-dir> <count>") }

switch args[1] {
case "validate":
    let seconds = args.count > 3 ? Double(args[3]) ?? 2 : 2
    let source = FileConfigSource(root: args[2])
    let resolver = ServiceResolver(options: .init(environment: "production", validator: .init(formatAssertion: true)),
                                   overrides: OverrideVariables(environment: [:]))
    var totalDocs = 0
    var totalTime = 0.0
    for service in source.listServices().services {
        let files = source.load(service, environment: "production")
        guard let schemaFile = files.schema,
              let schema = try? CompiledSchema(schemaFile.value, uri: "urn:confbus:service:\(service)", options: .init(formatAssertion: true)),
              let config = resolver.resolve(files, source: source).resolved?.config
        else { fail("\(service) does not resolve; run confbus validate") }
        var count = 0
        var spent = 0.0
        while spent < seconds {
            spent += elapsed { for _ in 0..<200 { precondition(schema.validate(config).isEmpty) } }
            count += 200
        }
        var resolutions = 0
        var resolveSpent = 0.0
        while resolveSpent < seconds / 2 {
            resolveSpent += elapsed { for _ in 0..<20 { precondition(resolver.resolve(files, source: source).resolved != nil) } }
            resolutions += 20
        }
        // What start-up pays per service for its schema: the metaschema check and the compilation.
        var compiles = 0
        var compileSpent = 0.0
        while compileSpent < seconds / 2 {
            compileSpent += elapsed {
                for _ in 0..<20 {
                    precondition((try? CompiledSchema(schemaFile.value, uri: "urn:confbus:service:\(service)", options: .init(formatAssertion: true))) != nil)
                }
            }
            compiles += 20
        }
        print(String(format: "compile   %-14@ %9.0f schemas/s (%.0f µs each: metaschema check, compilation, defaults layout)",
                     service.rawValue as NSString, Double(compiles) / compileSpent, compileSpent / Double(compiles) * 1e6))
        totalDocs += count
        totalTime += spent
        print(String(format: "validate  %-14@ %9.0f docs/s  (%.1f µs each); re-resolve, schema cached (files, layers, defaults, validate, checksum) %7.0f/s",
                     service.rawValue as NSString, Double(count) / spent, spent / Double(count) * 1e6, Double(resolutions) / resolveSpent))
    }
    print(String(format: "validate  all            %9.0f docs/s", Double(totalDocs) / totalTime))

case "generate":
    guard args.count == 5, let count = Int(args[4]) else { fail("usage: ConfbusBench generate <config-dir> <out-dir> <count>") }
    let fm = FileManager.default
    let from = URL(fileURLWithPath: args[2]).appendingPathComponent("services")
    let out = URL(fileURLWithPath: args[3]).appendingPathComponent("services")
    try? fm.removeItem(at: URL(fileURLWithPath: args[3]))
    try fm.createDirectory(at: out, withIntermediateDirectories: true)
    let examples = try fm.contentsOfDirectory(atPath: from.path).sorted()
    for i in 0..<count {
        let example = examples[i % examples.count]
        try fm.copyItem(at: from.appendingPathComponent(example), to: out.appendingPathComponent(String(format: "svc-%05d-%@", i, example)))
    }
    print("generated \(count) services in \(out.path)")

case "flags":
    // ConfbusBench flags <seconds>
    FlagBench.run(seconds: Double(args[2]) ?? 2)

case "latency":
    // ConfbusBench latency <http> <mqtt> <database-url> <token> <config-dir> <prefix> <count> [<floor-http> <floor-prefix>]
    guard args.count == 9 || args.count == 11, let count = Int(args[8]) else {
        fail("usage: ConfbusBench latency <http> <mqtt> <db> <token> <config-dir> <prefix> <count> [<floor-http> <floor-prefix>]")
    }
    let options = LatencyBench.Options(http: args[2], mqtt: args[3], database: args[4], token: args[5], configDir: args[6],
                                       prefix: args[7], count: count, floor: args.count == 11 ? (args[9], args[10]) : nil)
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        do { try await LatencyBench.run(options) } catch { print("latency bench failed: \(error)") }
        done.signal()
    }
    done.wait()

case "batch":
    // ConfbusBench batch <http> <mqtt> <token> <prefix> <tree>
    guard args.count == 7 else { fail("usage: ConfbusBench batch <http> <mqtt> <token> <prefix> <tree>") }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: args[6] + "/services"))?.sorted() ?? []
    // Each run's values differ from the previous run's: a seed one above the last one, kept beside the tree.
    let seedFile = URL(fileURLWithPath: args[6]).deletingLastPathComponent().appendingPathComponent("batch-seed")
    let seed = ((try? String(contentsOf: seedFile, encoding: .utf8)).flatMap { Int($0) } ?? 0) + 1
    try? String(seed).write(to: seedFile, atomically: true, encoding: .utf8)
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        do { try await BatchBench.run(http: args[2], mqtt: args[3], token: args[4], prefix: args[5], services: names, seed: seed) } catch { print("batch bench failed: \(error)") }
        done.signal()
    }
    done.wait()

case "floor-server":
    // ConfbusBench floor-server <port> <database-url> <mqtt-url> <prefix> [<document-file>]
    guard args.count == 6 || args.count == 7, let port = Int(args[2]) else {
        fail("usage: ConfbusBench floor-server <port> <database-url> <mqtt-url> <prefix> [<document-file>]")
    }
    let document = args.count == 7 ? [UInt8](FileManager.default.contents(atPath: args[6]) ?? Data()) : Array("{}".utf8)
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        do { try await StackFloor.run(port: port, database: args[3], mqtt: args[4], prefix: args[5], document: document) } catch { print("floor server failed: \(error)") }
        done.signal()
    }
    done.wait()

default:
    fail("unknown benchmark \(args[1])")
}
