export { ConfigSchema, EXECUTION_PROVIDERS, SERVER_ROLES, type Config, type ServerRole, type ConfigInput, type ModelSourceConfig } from './schema.js';
export { loadConfig, deepMerge, envToTree, type LoadConfigOptions } from './load.js';
