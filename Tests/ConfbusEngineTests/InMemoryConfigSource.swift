import ConfbusCore
import ConfbusEngine
import ConfbusYAML

/// A config tree held in memory: YAML text per service and file, read with the real loader.
struct InMemoryConfigSource: ConfigSource {
    var files: [String: [String: String]]   // service → file name → YAML

    func listServices() -> (services: [ServiceName], errors: [ConfbusError]) {
        (files.keys.sorted().compactMap { try? ServiceName(validating: $0) }, [])
    }

    func load(_ service: ServiceName, environment: String) -> ServiceFiles {
        var result = ServiceFiles(name: service)
        let serviceFiles = files[service.rawValue] ?? [:]
        func read(_ name: String) -> LoadedDocument? {
            guard let text = serviceFiles[name] else { return nil }
            do {
                let doc = try YAMLLoader().load(bytes: Array(text.utf8), file: "\(service)/\(name)")
                return LoadedDocument(file: "\(service)/\(name)", value: doc.value, locations: doc.locations)
            } catch {
                result.errors.append(error)
                return nil
            }
        }
        result.schema = read("schema.yaml")
        result.defaults = read("defaults.yaml")
        result.environment = read("\(environment).yaml")
        return result
    }

    func parseValue(_ text: String, source: String) throws(ConfbusError) -> JSONValue {
        try YAMLLoader().loadValue(text, source: source)
    }
}
