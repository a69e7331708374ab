export { ConfigSchema, FAMILY_NAMES, EXECUTION_PROVIDERS, ROLES, type Config, type ConfigInput, type ModelSourceConfig, type ParsedConfig, type PoolConfig, type PoolSizing } from './schema.js';
export { loadConfig, deepMerge, envToTree, type LoadConfigOptions } from './load.js';
export { cpuBudget, type CpuBudget } from './cpus.cjs';
export { describeSizing, sizePool, QUEUE_PER_WORKER } from './sizing.js';
