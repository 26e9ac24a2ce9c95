import ConfbusCore
import ConfbusEngine
import Foundation

/// The config tree on disk (CONTRACT.md §2): `services/<service>/schema.yaml` (or `schema.json`),
/// `defaults.yaml` and `<environment>.yaml`.
public struct FileConfigSource: ConfigSource {
    public let root: String
    public let loader: YAMLLoader

    public init(root: String, limits: YAMLLoader.Limits = .init()) {
        self.root = root
        self.loader = YAMLLoader(limits: limits)
    }

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
        func read(_ name: String, json: Bool = false) -> LoadedDocument? {
            let path = (dir as NSString).appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
            do {
                let document = json ? try loadJSON(path) : try loader.load(contentsOf: path)
                return LoadedDocument(file: path, value: document.value, locations: document.locations, modified: modified)
            } catch {
                files.errors.append(error)
                return nil
            }
        }
        let yamlSchema = (dir as NSString).appendingPathComponent("schema.yaml")
        if FileManager.default.fileExists(atPath: yamlSchema) {
            files.schema = read("schema.yaml")
            if FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("schema.json")) {
                files.errors.append(ConfbusError(code: .invalidSchema, message: "both schema.yaml and schema.json exist; keep one",
                                                 location: SourceLocation(file: yamlSchema, line: 1, column: 1)))
            }
        } else {
            files.schema = read("schema.json", json: true)
        }
        files.defaults = read("defaults.yaml")
        if ServiceName.isValid(environment), environment != "defaults", environment != "schema" {
            files.environment = read("\(environment).yaml")
        } else {
            files.errors.append(ConfbusError(code: .invalidName, message: "environment \"\(environment)\" is not a valid environment name"))
        }
        return files
    }

    public func parseValue(_ text: String, source: String) throws(ConfbusError) -> JSONValue {
        try loader.loadValue(text, source: source)
    }

    private func loadJSON(_ path: String) throws(ConfbusError) -> YAMLDocument {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfbusError(code: .unreadableFile, message: "cannot read \(path)", location: SourceLocation(file: path, line: 1, column: 1))
        }
        guard data.count <= loader.limits.maxDocumentBytes else {
            throw ConfbusError(code: .documentTooLarge, message: "document is \(data.count) bytes, over the limit of \(loader.limits.maxDocumentBytes) (max_document_bytes)",
                               location: SourceLocation(file: path, line: 1, column: 1))
        }
        do {
            return YAMLDocument(value: try JSONParser(maxDepth: loader.limits.maxDepth).parse([UInt8](data)))
        } catch {
            throw ConfbusError(code: .invalidJSON, message: error.message, location: SourceLocation(file: path, line: error.line, column: error.column))
        }
    }
}
