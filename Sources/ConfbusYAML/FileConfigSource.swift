import ConfbusCore
import ConfbusEngine
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The config tree on disk (CONTRACT.md §2): `services/<service>/schema.yaml` (or `schema.json`),
/// `defaults.yaml` and `<environment>.yaml`.
public struct FileConfigSource: ConfigSource {
    public let root: String
    public let loader: YAMLLoader
    /// Parsed files by path, with the identity they were parsed at: a file is read and parsed
    /// again only when its identity changes (or it was let go to keep within `heldFiles`).
    private let cache: ParsedFiles

    /// `heldFiles`: how many parsed files are kept between loads at most (the least recently used
    /// are let go and parsed again when next loaded).
    public init(root: String, limits: YAMLLoader.Limits = .init(), heldFiles: Int = 3_000) {
        self.root = root
        self.loader = YAMLLoader(limits: limits)
        self.cache = ParsedFiles(capacity: heldFiles)
    }

    /// How many parsed files are kept (for tests).
    var cachedFileCount: Int { cache.count }

    var servicesDirectory: String { (root as NSString).appendingPathComponent("services") }

    public func listServices() -> (services: [ServiceName], errors: [ConfbusError]) {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: servicesDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
            return ([], [ConfbusError(code: .unreadableFile, message: "no services folder at \(servicesDirectory)")])
        }
        let entries = ((try? fm.contentsOfDirectory(atPath: servicesDirectory)) ?? []).sorted()
        var services: [ServiceName] = []
        var errors: [ConfbusError] = []
        for entry in entries where !entry.hasPrefix(".") {
            let path = (servicesDirectory as NSString).appendingPathComponent(entry)
            guard fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
            do {
                services.append(try ServiceName(validating: entry))
            } catch {
                var e = error
                e.message = "folder \(path) is not a service: \(error.message)"
                errors.append(e)
            }
        }
        // Files of services that are gone are forgotten.
        cache.keep(directories: Set(services.map { (servicesDirectory as NSString).appendingPathComponent($0.rawValue) }))
        return (services, errors)
    }

    public func hasService(_ service: ServiceName) -> Bool {
        var isDirectory: ObjCBool = false
        let path = (servicesDirectory as NSString).appendingPathComponent(service.rawValue)
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    public func load(_ service: ServiceName, environment: String) -> ServiceFiles {
        let dir = (servicesDirectory as NSString).appendingPathComponent(service.rawValue)
        var files = ServiceFiles(name: service)
        func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }
        /// `identity` is the file's `stat`, taken once by the caller (nil: no such file).
        /// `deferred`: what is kept between reloads is the file's identity, not its tree (a schema:
        /// the resolver keeps it compiled by identity and reads the tree only to compile it again).
        func read(_ path: String, _ identity: FileIdentity?, json: Bool = false, deferred: Bool = false) -> LoadedDocument? {
            guard let identity else {
                cache.forget(path)
                return nil
            }
            let parse: @Sendable () -> Result<YAMLDocument, ConfbusError> = { [loader] in
                do throws(ConfbusError) {
                    return .success(json ? try Self.loadJSON(path, limits: loader.limits) : try loader.load(contentsOf: path))
                } catch {
                    return .failure(error)
                }
            }
            // Read again when asked. A file that no longer parses (it changed since it was
            // stat'ed; the next reload reports it) reads as the schema `false`, which no config
            // satisfies: a race fails closed, never open.
            let reread: @Sendable () -> (value: JSONValue, locations: SourceLocations) = {
                switch parse() {
                case .success(let document): (document.value, document.locations)
                case .failure: (.bool(false), [:])
                }
            }
            let parsed = cache.lookup(path, identity, parse: {
                parse().map { document in
                    let loaded = LoadedDocument(file: path, value: document.value, locations: document.locations,
                                                modified: identity.modified, identity: identity.description)
                    return deferred ? LoadedDocument(held: loaded, reading: reread) : loaded
                }
            }, retain: { $0.released })
            switch parsed {
            case .success(var document):
                // A file written within the last second may change again within the timestamp's
                // granularity: nothing made from it is reused.
                if identity.isFresh { document.identity = nil }
                return document
            case .failure(let error): files.errors.append(error); return nil
            }
        }
        let (yamlSchema, jsonSchema) = (path("schema.yaml"), path("schema.json"))
        let (yamlIdentity, jsonIdentity) = (FileIdentity(yamlSchema), FileIdentity(jsonSchema))
        if yamlIdentity != nil {
            files.schema = read(yamlSchema, yamlIdentity, deferred: true)
            if jsonIdentity != nil {
                files.errors.append(ConfbusError(code: .invalidSchema, message: "both schema.yaml and schema.json exist; keep one",
                                                 location: SourceLocation(file: yamlSchema, line: 1, column: 1)))
            }
        } else {
            files.schema = read(jsonSchema, jsonIdentity, json: true, deferred: true)
        }
        let defaults = path("defaults.yaml")
        files.defaults = read(defaults, FileIdentity(defaults))
        if ServiceName.isValid(environment), environment != "defaults", environment != "schema" {
            let overlay = path("\(environment).yaml")
            files.environment = read(overlay, FileIdentity(overlay))
        } else {
            files.errors.append(ConfbusError(code: .invalidName, message: "environment \"\(environment)\" is not a valid environment name"))
        }
        return files
    }

    /// What `load(service, environment:).identity` would be, from the files' `stat` alone: nothing
    /// is read or parsed, so a reload of an unchanged tree costs a few system calls per service.
    /// nil where `load` would have no identity (a file written within the last second, both
    /// schema files, an invalid environment name) — a load that fails to parse has none either,
    /// but an unchanged file that parsed before parses again.
    public func identity(of service: ServiceName, environment: String) -> String? {
        guard ServiceName.isValid(environment), environment != "defaults", environment != "schema" else { return nil }
        let dir = (servicesDirectory as NSString).appendingPathComponent(service.rawValue)
        func identity(_ name: String) -> FileIdentity? { FileIdentity((dir as NSString).appendingPathComponent(name)) }
        let yamlSchema = identity("schema.yaml")
        let jsonSchema = identity("schema.json")
        if yamlSchema != nil && jsonSchema != nil { return nil }
        var parts: [String] = []
        for file in [yamlSchema ?? jsonSchema, identity("defaults.yaml"), identity("\(environment).yaml")] {
            guard let file else { parts.append("-"); continue }
            if file.isFresh { return nil }
            parts.append(file.description)
        }
        return parts.joined(separator: "|")
    }

    public func parseValue(_ text: String, source: String) throws(ConfbusError) -> JSONValue {
        try loader.loadValue(text, source: source)
    }

    private static func loadJSON(_ path: String, limits: YAMLLoader.Limits) throws(ConfbusError) -> YAMLDocument {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfbusError(code: .unreadableFile, message: "cannot read \(path)", location: SourceLocation(file: path, line: 1, column: 1))
        }
        guard data.count <= limits.maxDocumentBytes else {
            throw ConfbusError(code: .documentTooLarge, message: "document is \(data.count) bytes, over the limit of \(limits.maxDocumentBytes) (max_document_bytes)",
                               location: SourceLocation(file: path, line: 1, column: 1))
        }
        do {
            return YAMLDocument(value: try JSONParser(maxDepth: limits.maxDepth).parse([UInt8](data)))
        } catch {
            throw ConfbusError(code: .invalidJSON, message: error.message, location: SourceLocation(file: path, line: error.line, column: error.column))
        }
    }
}

/// A file's identity from `stat`: a change of contents changes at least one of these (an editor's
/// rename-over changes the inode, an in-place write the size or the times).
struct FileIdentity: Equatable, CustomStringConvertible {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modifiedNanoseconds: Int64
    var changedNanoseconds: Int64

    /// nil when there is no regular file at `path`.
    init?(_ path: String) {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modifiedNanoseconds = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        changedNanoseconds = Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec)
    }

    var modified: Date { Date(timeIntervalSince1970: Double(modifiedNanoseconds) / 1e9) }

    /// Changed within the last second: it may change again without its times moving (file systems
    /// with coarse timestamps), so it is parsed again rather than trusted.
    var isFresh: Bool {
        let newest = max(modifiedNanoseconds, changedNanoseconds)
        return Double(newest) / 1e9 > Date().timeIntervalSince1970 - 1
    }

    var description: String { "\(device):\(inode):\(size):\(modifiedNanoseconds):\(changedNanoseconds)" }
}

/// Parsed documents (or their errors) by path and identity, at most `capacity` of them: past that
/// the least recently used are let go (a load parses them again), so a tree of ten thousand
/// services holds the files of the services in use, not every file it has.
final class ParsedFiles: Sendable {
    /// One file's entry, boxed: the table's buckets hold a reference instead of the whole entry.
    private final class Entry: Sendable {
        let identity: FileIdentity
        let result: Result<LoadedDocument, ConfbusError>

        init(_ identity: FileIdentity, _ result: Result<LoadedDocument, ConfbusError>) {
            self.identity = identity
            self.result = result
        }
    }

    private struct Table {
        var files: LeastRecentlyUsed<String, Entry>
        var directories: Set<String> = []
    }

    private let table: Mutex<Table>

    /// `capacity`: how many files are kept parsed at most.
    init(capacity: Int) {
        table = Mutex(Table(files: LeastRecentlyUsed(capacity: capacity)))
    }

    /// `retain` makes what is kept of a parsed document (its error is kept as it is).
    func lookup(_ path: String, _ identity: FileIdentity, parse: () -> Result<LoadedDocument, ConfbusError>,
                retain: (LoadedDocument) -> LoadedDocument = { $0 }) -> Result<LoadedDocument, ConfbusError> {
        if let entry = table.withLock({ $0.files.use(path) }), entry.identity == identity { return entry.result }
        let result = parse()
        guard !identity.isFresh else {
            forget(path)
            return result
        }
        let kept = Entry(identity, result.map(retain))
        table.withLock { $0.files.keep(kept, for: path) }
        return result
    }

    var count: Int { table.withLock { $0.files.count } }

    func forget(_ path: String) {
        table.withLock { $0.files.forget(path) }
    }

    /// Drops the files that are not directly in one of `directories` (only when the set of service
    /// directories changed since the last call: most listings find the same services).
    func keep(directories current: Set<String>) {
        table.withLock { table in
            guard table.directories != current else { return }
            table.directories = current
            table.files.forgetAll { !current.contains(($0 as NSString).deletingLastPathComponent) }
        }
    }
}
