import * as JobRepository from "../src/JobRepository.js"
import { jobRepositoryContract } from "./contract/JobRepositoryContract.js"

jobRepositoryContract("JobRepository.layerMemory", () => JobRepository.layerMemory)
