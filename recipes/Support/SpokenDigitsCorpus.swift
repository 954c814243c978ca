import ArgumentParser
import Foundation
import Loom

/// The spoken-digits corpus (corpora/spoken-digits/README.md): digit sequences ("four one nine"
/// -> "419") synthesized with espeak-ng across voices (an English accent plus a voice variant),
/// speeds and pitches, and optionally with flite's and festival's voices too, resampled to 16 kHz,
/// with white noise at a random signal-to-noise ratio. The test split speaks with voices never
/// used in training; an optional third split (`unseen`) speaks with whole synthesizers never used
/// in training, the closest stand-in for a human voice this machine can make. Deterministic for a seed: every
/// utterance's choices and noise come from its own generator (seed, index), so files can be
/// made in any order, in parallel, and an interrupted generation resumes where it stopped.
public enum SpokenDigitsCorpus {
    public static let words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    /// English accents of espeak-ng 1.51.
    public static let accents = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
    /// Voice variants that sound like a person (the robotic, whispering and joke ones left out).
    public static let variants = [
        "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "Alex", "Alicia", "Andrea", "Andy", "Annie",
        "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "adam",
        "anika", "announcer", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "croak", "david", "ed", "edward",
        "edward2", "grandma", "grandpa", "gustave", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta", "klatt", "klatt2",
        "klatt3", "klatt4", "klatt5", "klatt6", "linda", "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro",
        "quincy", "rob", "robert", "sandro", "shelby", "steph", "steph2", "steph3", "travis", "victor", "zac",
    ]

    /// A speech synthesizer (a Debian package) and its English voices.
    public enum Engine: String, Codable, CaseIterable, Sendable {
        case espeak = "espeak-ng", flite, festival

        /// Voices: espeak-ng's are its variants (each utterance also draws an accent); flite's
        /// built-in voices; festival's installed English voices.
        public var voices: [String] {
            switch self {
            case .espeak: return SpokenDigitsCorpus.variants
            case .flite: return ["awb", "kal", "kal16", "rms", "slt"]
            case .festival: return ["cmu_us_slt_arctic_hts", "kal_diphone", "ked_diphone"]
            }
        }

        /// Voices held out of training for the test split: espeak-ng's `heldOutVariants`, one of
        /// the others'.
        func heldOut(_ p: Parameters) -> Int { self == .espeak ? p.heldOutVariants : 1 }

        var executable: String { ["espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"][rawValue] ?? rawValue }
        var packages: String {
            switch self {
            case .espeak: return "espeak-ng"
            case .flite: return "flite"
            case .festival: return "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
            }
        }
    }

    public struct Parameters: Codable, Equatable, Sendable {
        public var seed: UInt64
        public var trainUtterances: Int
        public var testUtterances: Int
        public var maximumDigits: Int
        /// Variants reserved for the test split.
        public var heldOutVariants: Int
        public var sampleRate = 16_000
        /// Words per minute, uniform in this range.
        public var speeds = 120...200
        /// espeak-ng pitch (0-99), uniform in this range.
        public var pitches = 20...80
        /// Signal-to-noise ratio in dB, uniform in this range.
        public var signalToNoise = 10.0...30.0
        /// The synthesizers of the training and test splits (each utterance draws one, then a voice).
        public var engines: [Engine] = [.espeak]
        /// Synthesizers never heard in training, for the `unseen` split (all their voices).
        public var unseenEngines: [Engine] = []
        public var unseenUtterances = 0

        public init(seed: UInt64, trainUtterances: Int, testUtterances: Int, maximumDigits: Int, heldOutVariants: Int) {
            self.seed = seed
            self.trainUtterances = trainUtterances
            self.testUtterances = testUtterances
            self.maximumDigits = maximumDigits
            self.heldOutVariants = heldOutVariants
        }
    }

    /// One utterance to synthesize.
    public struct Utterance: Equatable, Sendable {
        public var file: String
        public var digits: String
        public var engine = Engine.espeak
        public var accent: String
        /// The voice: an espeak-ng variant, or a flite or festival voice.
        public var variant: String
        public var speed: Int
        public var pitch: Int
        public var signalToNoise: Double
        public var noiseSeed: UInt64
        public var voice: String { engine == .espeak ? "\(accent)+\(variant)" : variant }
        public var spoken: String { digits.map { words[Int(String($0))!] }.joined(separator: " ") }
    }

    /// The variants of each split: (train, test).
    public static func variantSplit(_ p: Parameters) -> (train: [String], test: [String]) {
        let (train, test) = voiceSplit(p, .espeak)
        return (train, test)
    }

    /// An engine's voices of each split: a seeded shuffle, the first `heldOut` for the test.
    public static func voiceSplit(_ p: Parameters, _ engine: Engine) -> (train: [String], test: [String]) {
        // espeak-ng's seed as before, so that espeak-only corpora keep their voices.
        var g = SeededGenerator(seed: p.seed &+ 0x5EED &+ UInt64(engine == .espeak ? 0 : 17 * (Engine.allCases.firstIndex(of: engine) ?? 0)))
        let shuffled = engine.voices.shuffled(using: &g), held = engine.heldOut(p)
        return (Array(shuffled.dropFirst(held)).sorted(), Array(shuffled.prefix(held)).sorted())
    }

    /// Every utterance of the three splits (unseen empty without unseen engines), deterministically.
    public static func plan(_ p: Parameters) -> (train: [Utterance], test: [Utterance], unseen: [Utterance]) {
        func make(_ split: String, _ count: Int, _ pools: [(Engine, [String])], _ salt: UInt64) -> [Utterance] {
            let pools = pools.filter { !$0.1.isEmpty }
            guard !pools.isEmpty else { return [] }
            return (0..<count).map { i in
                var g = SeededGenerator(seed: p.seed &* 0x9E37_79B9 &+ salt &+ UInt64(i))
                let length = Int.random(in: 1...p.maximumDigits, using: &g)
                let digits = String((0..<length).map { _ in Character(String(Int.random(in: 0...9, using: &g))) })
                let accent = accents.randomElement(using: &g)!
                // One engine draws nothing more: espeak-only corpora keep their utterances.
                let (engine, voices) = pools.count == 1 ? pools[0] : pools[Int.random(in: 0..<pools.count, using: &g)]
                return Utterance(file: "\(split)/\(split)-\(String(format: "%05d", i)).wav", digits: digits, engine: engine,
                                 accent: accent, variant: voices.randomElement(using: &g)!,
                                 speed: Int.random(in: p.speeds, using: &g), pitch: Int.random(in: p.pitches, using: &g),
                                 signalToNoise: Double.random(in: p.signalToNoise, using: &g), noiseSeed: g.next())
            }
        }
        let splits = p.engines.map { ($0, voiceSplit(p, $0)) }
        return (make("train", p.trainUtterances, splits.map { ($0.0, $0.1.train) }, 1 << 40),
                make("test", p.testUtterances, splits.map { ($0.0, $0.1.test) }, 2 << 40),
                make("unseen", p.unseenUtterances, p.unseenEngines.map { ($0, $0.voices) }, 3 << 40))
    }

    /// The executable of an engine, or an error telling how to install it.
    public static func executable(_ engine: Engine) throws -> URL {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let url = URL(fileURLWithPath: String(directory)).appendingPathComponent(engine.executable)
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        throw ValidationError("spoken-digits synthesizes its corpus with \(engine.rawValue), which is not installed: apt-get install \(engine.packages) (or pass --train-manifest/--test-manifest)")
    }

    /// The espeak-ng executable, or an error telling how to install it.
    public static func espeak() throws -> URL { try executable(.espeak) }

    /// Makes (or completes) the corpus in `directory`: audio under train/ and test/, then
    /// train.tsv and test.tsv (written last, so their presence means the corpus is whole).
    /// Returns the manifest URLs (unseen.tsv only with unseen engines).
    public static func generate(_ p: Parameters, in directory: URL, threads: Int) throws -> (train: URL, test: URL, unseen: URL?) {
        let stamp = directory.appendingPathComponent("corpus.json")
        let trainManifest = directory.appendingPathComponent("train.tsv"), testManifest = directory.appendingPathComponent("test.tsv")
        let unseenManifest = p.unseenEngines.isEmpty || p.unseenUtterances == 0 ? nil : directory.appendingPathComponent("unseen.tsv")
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let encoded = try encoder.encode(p)
        if FileManager.default.fileExists(atPath: trainManifest.path), FileManager.default.fileExists(atPath: testManifest.path),
           unseenManifest.map({ FileManager.default.fileExists(atPath: $0.path) }) ?? true,
           let existing = FileManager.default.contents(atPath: stamp.path), existing == encoded {
            return (trainManifest, testManifest, unseenManifest)
        }
        var programs: [Engine: URL] = [:]
        for engine in Set(p.engines + p.unseenEngines) { programs[engine] = try executable(engine) }
        for split in ["train", "test"] + (unseenManifest == nil ? [] : ["unseen"]) {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent(split), withIntermediateDirectories: true)
        }
        try AtomicFile.write(encoded, to: stamp)
        let (train, test, unseen) = plan(p)
        let all = train + test + unseen
        let progress = ProgressLine(logEvery: 1000)
        let lock = NSLock()
        var done = 0, failure: Error?
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("loom-espeak-\(getpid())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let workers = max(1, threads)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for i in stride(from: w, to: all.count, by: workers) {
                if lock.withLock({ failure != nil }) { return }
                do {
                    let destination = directory.appendingPathComponent(all[i].file)
                    if !FileManager.default.fileExists(atPath: destination.path) {
                        try synthesize(all[i], program: programs[all[i].engine] ?? URL(fileURLWithPath: "/nonexistent"),
                                       scratch: scratch.appendingPathComponent("\(w).wav"), sampleRate: p.sampleRate, to: destination)
                    }
                    lock.withLock {
                        done += 1
                        progress.show("synthesizing \(done)/\(all.count) utterances", count: done, final: done == all.count)
                    }
                } catch {
                    lock.withLock { failure = failure ?? error }
                }
            }
        }
        if let failure { throw failure }
        for (utterances, url) in [(train, trainManifest), (test, testManifest)] + (unseenManifest.map { [(unseen, $0)] } ?? []) {
            let manifest = AudioManifest(entries: utterances.map { .init(path: directory.appendingPathComponent($0.file).path, transcript: $0.digits) })
            try AtomicFile.write(Data(manifest.text(relativeTo: directory).utf8), to: url)
        }
        // What each file says and who says it, for listening and error analysis.
        let voices = "file\tdigits\tspoken\tengine\tvoice\tspeed\tpitch\tsnr_db\n" + all.map {
            "\($0.file)\t\($0.digits)\t\($0.spoken)\t\($0.engine.rawValue)\t\($0.voice)\t\($0.speed)\t\($0.pitch)\t" + String(format: "%.1f", $0.signalToNoise)
        }.joined(separator: "\n") + "\n"
        try AtomicFile.write(Data(voices.utf8), to: directory.appendingPathComponent("utterances.tsv"))
        return (trainManifest, testManifest, unseenManifest)
    }

    /// One utterance: its engine to a scratch WAV, resampled, noise added, written as 16-bit WAV.
    static func synthesize(_ u: Utterance, program: URL, scratch: URL, sampleRate: Int, to destination: URL) throws {
        // posix_spawn and waitpid: Foundation's Process polls for the child's exit, which made
        // synthesis wait ~50 ms per utterance on Linux.
        let errors = scratch.appendingPathExtension("err")
        // Speed: espeak-ng in words per minute; flite and festival stretch durations (1 is
        // their own rate, about 160 words per minute). Pitch: espeak-ng only.
        let stretch = String(format: "%.3f", 160 / Double(u.speed))
        let arguments: [String]
        switch u.engine {
        case .espeak:
            arguments = [program.path, "-v", u.voice, "-s", "\(u.speed)", "-p", "\(u.pitch)", "-w", scratch.path, u.spoken]
        case .flite:
            arguments = [program.path, "-voice", u.voice, "--setf", "duration_stretch=\(stretch)", "-t", u.spoken, "-o", scratch.path]
        case .festival:
            let text = scratch.appendingPathExtension("txt")
            try Data(u.spoken.utf8).write(to: text)
            arguments = [program.path, "-eval", "(voice_\(u.voice))", "-eval", "(Parameter.set 'Duration_Stretch \(stretch))", "-o", scratch.path, text.path]
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, errors.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var argv = arguments.map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, program.path, &actions, nil, &argv, environ)
        guard spawned == 0 else { throw ValidationError("cannot run \(program.path): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // Exited normally with status 0: the low 7 bits (signal) and the exit code both zero.
        guard status == 0 else {
            let message = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
            throw ValidationError("\(u.engine.rawValue) voice \(u.voice) failed (wait status \(status)): \(message)")
        }
        var audio = try Audio.read(path: scratch.path, sampleRate: sampleRate)
        guard !audio.samples.isEmpty else { throw ValidationError("\(u.engine.rawValue) voice \(u.voice) produced no audio for \"\(u.spoken)\"") }
        // White Gaussian noise at the drawn SNR relative to the utterance's mean power.
        let power = audio.samples.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(audio.samples.count)
        let deviation = (power / pow(10, u.signalToNoise / 10)).squareRoot()
        var g = SeededGenerator(seed: u.noiseSeed)
        let noise = WaveformAugment.gaussianNoise(count: audio.samples.count, deviation: deviation, using: &g)
        for i in audio.samples.indices { audio.samples[i] += noise[i] }
        try AudioWriter.write(audio, to: destination)
    }
}
