import ConfbusCore
import Dispatch

/// The config tree behind an async seam: every read of the files runs on a Dispatch queue, never
/// on the cooperative pool, so a slow disk cannot stall request handling.
public struct ConfigTree: Sendable {
    public let source: any ConfigSource
    public let environment: String

    public init(source: any ConfigSource, environment: String) {
        self.source = source
        self.environment = environment
    }

    private func offPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: work()) }
        }
    }

    public func listServices() async -> (services: [ServiceName], errors: [ConfbusError]) {
        await offPool { [source] in source.listServices() }
    }

    public func load(_ service: ServiceName) async -> ServiceFiles {
        await offPool { [source, environment] in source.load(service, environment: environment) }
    }

    /// Loads every listed service, on every core.
    public func loadAll(_ services: [ServiceName]) async -> [ServiceFiles] {
        await offPool { [source, environment] in
            let slots = IndexedResults<ServiceFiles>(count: services.count)
            DispatchQueue.concurrentPerform(iterations: services.count) { index in
                slots.set(index, source.load(services[index], environment: environment))
            }
            return slots.values
        }
    }

    public func hasService(_ service: ServiceName) async -> Bool {
        await offPool { [source] in source.hasService(service) }
    }

    /// Runs CPU work (resolution) off the cooperative pool.
    public func compute<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await offPool(work)
    }
}

import Synchronization

/// Results written by index from `concurrentPerform`.
final class IndexedResults<T: Sendable>: Sendable {
    private let storage: Mutex<[T?]>

    init(count: Int) { storage = Mutex(Array(repeating: nil, count: count)) }

    func set(_ index: Int, _ value: T) { storage.withLock { $0[index] = value } }

    var values: [T] { storage.withLock { $0.compactMap { $0 } } }
}
