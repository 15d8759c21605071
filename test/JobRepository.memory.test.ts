import * as JobRepository from "../src/JobRepository.js"
import { chunkContract } from "./contract/chunkContract.js"
import { jobRepositoryContract } from "./contract/JobRepositoryContract.js"

jobRepositoryContract("JobRepository.layerMemory", () => JobRepository.layerMemory)
chunkContract("JobRepository.layerMemory", () => JobRepository.layerMemory)
