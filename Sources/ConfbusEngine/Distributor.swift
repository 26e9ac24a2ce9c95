import ConfbusCore
import Logging

/// The distributor's use cases, built once by the composition root over one commit pipeline.
/// Adapters receive the parts they use, never the whole: HTTP the reads and the operator use
/// cases, MQTT the instance reports and the reads, the start-up sequence the reload.
public struct Distributor: Sendable {
    public let pipeline: CommitPipeline
    public let reads: ConfigReads
    public let reloader: TreeReload
    public let overrides: OverrideEditing
    public let batches: BatchUpdates
    public let archive: Archive
    public let instances: InstanceReports
    public let rollouts: Rollouts

    public init(options: CommitPipeline.Options, source: any ConfigSource, resolver: ServiceResolver, store: any ConfbusStore,
                cache: LiveCache = LiveCache(), limits: PublishLimits? = nil, signal: WakeSignal = WakeSignal(),
                instanceTTL: Duration = .seconds(86_400), logger: Logger) {
        let definitions = ServiceDefinitions(source: source, resolver: resolver, environment: options.environment)
        let invalid = InvalidServices()
        let pipeline = CommitPipeline(options: options, store: store, cache: cache,
                                      limits: limits ?? PublishLimits(maxDocumentBytes: options.maxPayloadBytes), signal: signal, logger: logger)
        self.pipeline = pipeline
        self.reads = ConfigReads(store: store, cache: cache, definitions: definitions, invalid: invalid, inFlight: pipeline.inFlight)
        self.reloader = TreeReload(pipeline: pipeline, definitions: definitions, store: store, invalid: invalid)
        self.overrides = OverrideEditing(pipeline: pipeline, definitions: definitions, store: store)
        self.batches = BatchUpdates(pipeline: pipeline, definitions: definitions, store: store)
        self.archive = Archive(pipeline: pipeline, definitions: definitions, store: store)
        let board = RolloutBoard(changes: cache.changes)
        self.instances = InstanceReports(store: store, cache: cache, definitions: definitions, reload: reloader,
                                         maxPayloadBytes: options.maxPayloadBytes, board: board)
        self.rollouts = Rollouts(pipeline: pipeline, overrides: overrides, store: store, board: board, instanceTTL: instanceTTL,
                                 signal: WakeSignal(), logger: logger)
    }
}
